/** The dead-letter queue of one subscription: a paged list with payloads, and reprocess or purge. */
import { useEffect, useState } from "preact/hooks";
import type { Message, SubscriptionMetrics } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { api, can, errorText } from "./api.ts";
import { refreshNow, useTick } from "./live.ts";
import { confirmAction, ErrorLine, Json, ScopeNote, Time, useAction } from "./ui.tsx";

const pageSize = 20;

// What the server's own reasons mean; any other reason is the text a consumer's nack gave.
const reasonNotes: Record<string, string> = {
  max_delivery_attempts: "it used up its delivery attempts",
  lease_expired: "its last lease ended without an ack",
  nacked: "a nack sent it here without a reason",
};

/** A dead letter's reason exactly as the server gave it, and what it means. */
function Reason({ reason }: { reason?: string }) {
  // Every dead letter has a reason since migration 0011; a nack may give an empty one.
  if (reason === undefined) return <span class="hint">not reported</span>;
  const note = reasonNotes[reason] ?? (reason === "" ? "its last nack gave an empty reason" : "given by its last nack");
  return (
    <>
      <code data-field="reason">{reason}</code>
      <span class="hint reason-note">{note}</span>
    </>
  );
}

/** Lists a page of a subscription's dead letters, with actions on the selected ones and on all. */
export function DlqView({ subscriptionId }: { subscriptionId: string }) {
  const tick = useTick();
  const [offset, setOffset] = useState(0);
  const [messages, setMessages] = useState<Message[]>();
  const [metrics, setMetrics] = useState<SubscriptionMetrics>();
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [error, setError] = useState<string>();
  const [done, setDone] = useState<string>();
  const action = useAction();
  const allowed = can("subscriptions:consume", subscriptionId);

  useEffect(() => {
    if (!allowed) return;
    let current = true;
    api.subscriptions.listDlqMessages({ subscriptionId, offset, limit: pageSize }).then(
      ({ data }) => {
        if (!current) return;
        setMessages(data);
        setError(undefined);
        // Forget selected messages that left the queue.
        setSelected((before) => new Set(data.map((message) => message.id).filter((id) => before.has(id))));
      },
      (failure) => current && setError(errorText(failure)),
    );
    if (can("subscriptions:read", subscriptionId)) {
      api.subscriptions.getSubscriptionMetrics({ subscriptionId }).then(
        (answer) => current && setMetrics(answer),
        () => undefined,
      );
    }
    return () => {
      current = false;
    };
  }, [tick, subscriptionId, offset, allowed]);

  function toggle(id: string) {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  }

  async function act(kind: "reprocess" | "purge", all: boolean) {
    const ids = [...selected];
    const what = all ? "every dead letter" : `${ids.length} selected message${ids.length === 1 ? "" : "s"}`;
    const question =
      kind === "reprocess"
        ? `Reprocess ${what} of "${subscriptionId}"? They go back to the queue with their delivery attempts reset.`
        : `Purge ${what} of "${subscriptionId}"? They are deleted for good.`;
    if (!(await confirmAction(question, kind === "reprocess" ? "Reprocess" : "Purge"))) return;
    const request = { subscriptionId, messageIds: all ? [] : ids, all };
    const answer = await action.run(() =>
      kind === "reprocess" ? api.subscriptions.reprocessDlqMessages(request) : api.subscriptions.purgeDlqMessages(request),
    );
    if (answer) {
      setDone(`${kind === "reprocess" ? "Reprocessed" : "Purged"} ${what}.`);
      setSelected(new Set());
      // After all of them, a later page would only say "No more dead letters".
      if (all) setOffset(0);
      refreshNow();
    }
  }

  const count = metrics?.dlq;
  return (
    <section aria-labelledby="dlq-title">
      <p>
        <a href="#/subscriptions">← Subscriptions</a>
      </p>
      <h1 id="dlq-title">Dead letters of {subscriptionId}</h1>
      {count !== undefined ? (
        <p data-metric="dlq-count">{count === 1 ? "1 message" : `${count} messages`} in the dead-letter queue.</p>
      ) : null}
      {!allowed ? <ScopeNote scopes={[`subscriptions:consume`]} /> : null}
      <div class="buttons toolbar">
        <button type="button" onClick={() => act("reprocess", false)} disabled={!allowed || selected.size === 0 || action.busy}>
          Reprocess selected
        </button>
        <button type="button" class="danger" onClick={() => act("purge", false)} disabled={!allowed || selected.size === 0 || action.busy}>
          Purge selected
        </button>
        <button type="button" onClick={() => act("reprocess", true)} disabled={!allowed || action.busy || messages?.length === 0}>
          Reprocess all
        </button>
        <button
          type="button"
          class="danger"
          onClick={() => act("purge", true)}
          disabled={!allowed || action.busy || messages?.length === 0}
        >
          Purge all
        </button>
      </div>
      <ErrorLine error={action.error ?? error} />
      {done && !action.error ? (
        <p class="ok" role="status">
          {done}
        </p>
      ) : null}
      {messages && messages.length === 0 ? <p>{offset === 0 ? "The dead-letter queue is empty." : "No more dead letters."}</p> : null}
      <ul class="messages">
        {messages?.map((message) => (
          <li key={message.id} class="message" data-message={message.id}>
            <label class="select">
              <input type="checkbox" checked={selected.has(message.id)} onChange={() => toggle(message.id)} disabled={!allowed} />
              <span>
                Select message <code>{message.id}</code>
              </span>
            </label>
            <dl>
              <dt>Reason</dt>
              <dd>
                <Reason reason={message.reason} />
              </dd>
              <dt>Dead-lettered</dt>
              <dd data-field="dead-lettered-at">
                <Time value={message.deadLetteredAt} />
              </dd>
              <dt>Delivery attempts</dt>
              <dd data-field="attempts">{message.deliveryAttempts}</dd>
              <dt>Published</dt>
              <dd>
                <Time value={message.createdAt} />
              </dd>
            </dl>
            <Json value={message.payload ?? {}} />
          </li>
        ))}
      </ul>
      <nav class="buttons pager" aria-label="Pages">
        <button type="button" onClick={() => setOffset(Math.max(0, offset - pageSize))} disabled={offset === 0}>
          Previous page
        </button>
        <span>
          {messages && messages.length > 0 ? `Messages ${offset + 1}–${offset + messages.length}` : ""}
          {count !== undefined ? ` of ${count}` : ""}
        </span>
        <button type="button" onClick={() => setOffset(offset + pageSize)} disabled={!messages || messages.length < pageSize}>
          Next page
        </button>
      </nav>
    </section>
  );
}
