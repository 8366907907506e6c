/** The subscriptions view: list with live metrics and backlog charts, create with a filter editor, delete. */
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { useEffect, useState } from "preact/hooks";
import type { Subscription, SubscriptionMetrics } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { api, can, errorText, listAll } from "./api.ts";
import { recordBacklog, refreshNow, type Sample, useTick } from "./live.ts";
import { idProblem, parseCount, parseFilter, payloadKeyProblem } from "./rules.ts";
import {
  BacklogChart,
  CreatePanel,
  confirmAction,
  ErrorLine,
  IdField,
  OkLine,
  PayloadKeyField,
  ScopeNote,
  TextField,
  Time,
  useAction,
} from "./ui.tsx";

interface Row {
  subscription: Subscription;
  metrics?: SubscriptionMetrics;
  samples: Sample[];
  error?: string;
}

// The metrics columns: the field of SubscriptionMetrics and its heading.
const metricColumns = [
  { metric: "available", label: "Available" },
  { metric: "delivered", label: "Delivered" },
  { metric: "acked", label: "Acked" },
  { metric: "dlq", label: "Dead letters" },
] as const;

// Each shown subscription costs a metrics call per refresh, so the list shows this many at most.
const shownAtMost = 50;

/** Lists the subscriptions with their live counts, with a form to create one. */
export function SubscriptionsView() {
  const tick = useTick();
  const [rows, setRows] = useState<Row[]>();
  const [matching, setMatching] = useState(0);
  const [search, setSearch] = useState("");
  const [error, setError] = useState<string>();
  const readable = can("subscriptions:read");

  useEffect(() => {
    if (!readable) return;
    let current = true;
    (async () => {
      const all = await listAll((offset, limit) => api.subscriptions.listSubscriptions({ offset, limit }));
      const found = all.filter((subscription) => subscription.id.includes(search) || subscription.topicId.includes(search));
      const next = await Promise.all(
        found.slice(0, shownAtMost).map(async (subscription): Promise<Row> => {
          try {
            const metrics = await api.subscriptions.getSubscriptionMetrics({ subscriptionId: subscription.id });
            return { subscription, metrics, samples: recordBacklog(subscription.id, metrics.available + metrics.delivered) };
          } catch (failure) {
            return { subscription, samples: [], error: errorText(failure) };
          }
        }),
      );
      if (current) {
        setRows(next);
        setMatching(found.length);
        setError(undefined);
      }
    })().catch((failure) => current && setError(errorText(failure)));
    return () => {
      current = false;
    };
  }, [tick, readable, search]);

  return (
    <section aria-labelledby="subscriptions-title">
      <h1 id="subscriptions-title">Subscriptions</h1>
      <CreateSubscriptionForm />
      <h2>All subscriptions</h2>
      {!readable ? <ScopeNote scopes={["subscriptions:read"]} /> : null}
      <ErrorLine error={error} />
      <p class="note">
        Backlog is available plus delivered (not yet acked). The API does not report the age of the oldest message, so the console cannot
        show it.
      </p>
      <div class="search">
        <label for="subscription-search">Find</label>
        <input
          id="subscription-search"
          type="search"
          placeholder="subscription or topic id"
          value={search}
          onInput={(event) => setSearch(event.currentTarget.value)}
        />
        {rows && matching > rows.length ? (
          <span class="note" role="status">
            Showing {rows.length} of {matching}: narrow the search to see the others.
          </span>
        ) : null}
      </div>
      {rows && rows.length === 0 && search !== "" ? <p>No subscription or topic id contains "{search}".</p> : null}
      {rows && rows.length === 0 && search === "" ? <p>No subscriptions yet.</p> : null}
      {rows && rows.length > 0 ? (
        <div class="table">
          <table>
            <thead>
              <tr>
                <th scope="col">Subscription</th>
                <th scope="col">Topic and filter</th>
                {metricColumns.map(({ metric, label }) => (
                  <th key={metric} scope="col" class="number">
                    {label}
                  </th>
                ))}
                <th scope="col">Backlog, 10 min</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <SubscriptionRow key={row.subscription.id} row={row} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

function SubscriptionRow({ row }: { row: Row }) {
  const { subscription, metrics } = row;
  const action = useAction();
  async function remove() {
    if (!(await confirmAction(`Delete subscription "${subscription.id}" and all its messages?`, "Delete subscription"))) return;
    await action.run(() => api.subscriptions.deleteSubscription({ id: subscription.id }));
    refreshNow();
  }
  const filter = subscription.filter ? toJson(ValueSchema, subscription.filter) : null;
  return (
    <tr data-subscription={subscription.id}>
      <th scope="row">
        {subscription.id}
        <details>
          <summary>Settings</summary>
          <dl class="settings">
            <dt>Max delivery attempts</dt>
            <dd>{subscription.maxDeliveryAttempts}</dd>
            <dt>Backoff</dt>
            <dd>
              {subscription.backoffMinSeconds}–{subscription.backoffMaxSeconds} s
            </dd>
            <dt>Ack deadline</dt>
            <dd>{subscription.ackDeadlineSeconds} s</dd>
            <dt>Ordering key</dt>
            <dd>{subscription.orderingKey ?? "—"}</dd>
            <dt>Created</dt>
            <dd>
              <Time value={subscription.createdAt} />
            </dd>
          </dl>
        </details>
      </th>
      <td>
        {subscription.topicId}
        {filter !== null && !(typeof filter === "object" && Object.keys(filter).length === 0) ? (
          <code class="filter">{JSON.stringify(filter)}</code>
        ) : null}
      </td>
      {metricColumns.map(({ metric, label }) => (
        <td key={metric} class="number" data-metric={metric} data-label={label}>
          {metrics?.[metric] ?? "—"}
        </td>
      ))}
      <td data-label="Backlog">
        <BacklogChart samples={row.samples} />
      </td>
      <td class="actions">
        <div class="buttons">
          <a
            class="button"
            href={`#/subscriptions/${encodeURIComponent(subscription.id)}/dlq`}
            aria-label={`Dead letters of ${subscription.id}`}
          >
            Dead letters{metrics?.dlq ? ` (${metrics.dlq})` : ""}
          </a>
          <button
            type="button"
            class="danger"
            onClick={remove}
            disabled={action.busy || !can("subscriptions:delete", subscription.id)}
            aria-label={`Delete ${subscription.id}`}
          >
            Delete
          </button>
        </div>
        <ErrorLine error={row.error ?? action.error} />
      </td>
    </tr>
  );
}

/** Says in words what a valid filter lets through. */
function describeFilter(filter: JsonValue): string {
  if (filter === null || typeof filter !== "object" || Array.isArray(filter) || Object.keys(filter).length === 0) {
    return "Every message of the topic.";
  }
  const clauses = Object.entries(filter).map(([key, values]) => {
    const options = (values as JsonValue[]).map((value) => JSON.stringify(value));
    return options.length === 0 ? `${key} is absent` : `${key} is ${options.join(" or ")}`;
  });
  return `Messages where ${clauses.join(", and ")} (a message without one of these keys is not excluded by it).`;
}

const numberFields = [
  { name: "maxDeliveryAttempts", label: "Max delivery attempts", min: 1, max: undefined },
  { name: "backoffMinSeconds", label: "Backoff min, seconds", min: 1, max: undefined },
  { name: "backoffMaxSeconds", label: "Backoff max, seconds", min: 1, max: undefined },
  { name: "ackDeadlineSeconds", label: "Ack deadline, seconds", min: 1, max: 600 },
] as const;

type NumberField = (typeof numberFields)[number]["name"];

function CreateSubscriptionForm() {
  const [id, setId] = useState("");
  const [topicId, setTopicId] = useState("");
  const [filterText, setFilterText] = useState("");
  const [orderingKey, setOrderingKey] = useState("");
  const [numbers, setNumbers] = useState<Record<NumberField, string>>({
    maxDeliveryAttempts: "",
    backoffMinSeconds: "",
    backoffMaxSeconds: "",
    ackDeadlineSeconds: "",
  });
  const [topics, setTopics] = useState<string[]>([]);
  const [created, setCreated] = useState<string>();
  const action = useAction();

  useEffect(() => {
    if (!can("topics:read")) return;
    listAll((offset, limit) => api.topics.listTopics({ offset, limit })).then(
      (data) => setTopics(data.map((topic) => topic.id)),
      () => setTopics([]),
    );
  }, []);

  const filter = parseFilter(filterText);
  const parsed = Object.fromEntries(
    numberFields.map((field) => [field.name, parseCount(numbers[field.name], field.min, field.max)]),
  ) as Record<NumberField, ReturnType<typeof parseCount>>;
  const { backoffMinSeconds: backoffMin, backoffMaxSeconds: backoffMax } = parsed;
  const backoffProblem =
    backoffMin.value !== undefined && backoffMax.value !== undefined && backoffMin.value > backoffMax.value
      ? "must be at most backoff max"
      : undefined;
  const invalid =
    id === "" ||
    topicId === "" ||
    idProblem(id) !== undefined ||
    idProblem(topicId) !== undefined ||
    filter.problem !== undefined ||
    payloadKeyProblem(orderingKey) !== undefined ||
    backoffProblem !== undefined ||
    Object.values(parsed).some((number) => number.problem !== undefined);

  async function submit(event: Event) {
    event.preventDefault();
    const subscription = await action.run(() =>
      api.subscriptions.createSubscription({
        id,
        topicId,
        filter: filter.value,
        orderingKey: orderingKey || undefined,
        maxDeliveryAttempts: parsed.maxDeliveryAttempts.value,
        backoffMinSeconds: parsed.backoffMinSeconds.value,
        backoffMaxSeconds: parsed.backoffMaxSeconds.value,
        ackDeadlineSeconds: parsed.ackDeadlineSeconds.value,
      }),
    );
    if (subscription) {
      setCreated(subscription.id);
      setId("");
      setFilterText("");
      setOrderingKey("");
      refreshNow();
    }
  }

  return (
    <CreatePanel
      title="Create a subscription"
      titleId="create-subscription-title"
      submit="Create subscription"
      scope="subscriptions:create"
      invalid={invalid}
      action={action}
      onSubmit={submit}
      result={<OkLine text={created && !action.error ? `Created subscription ${created}.` : undefined} />}
    >
      <div class="fields">
        <IdField label="Subscription id" value={id} onValue={setId} />
        <TextField
          label="Topic"
          value={topicId}
          onValue={setTopicId}
          problem={idProblem(topicId)}
          options={topics}
          required
          autocomplete="off"
        />
        <PayloadKeyField label="Ordering key (optional)" value={orderingKey} onValue={setOrderingKey} />
        {numberFields.map((field) => (
          <TextField
            key={field.name}
            label={field.label}
            value={numbers[field.name]}
            onValue={(value) => setNumbers({ ...numbers, [field.name]: value })}
            problem={parsed[field.name].problem ?? (field.name === "backoffMinSeconds" ? backoffProblem : undefined)}
            hint="server default when empty"
            inputMode="numeric"
          />
        ))}
      </div>
      <div class="filter-editor">
        <TextField
          label="Filter (JSON, optional)"
          value={filterText}
          onValue={setFilterText}
          problem={filter.problem ? `filter ${filter.problem}` : undefined}
          hint='e.g. {"country": ["BR", "US"]}: keys AND, values OR'
          rows={4}
        />
        <div class="filter-preview" aria-live="polite">
          <span class="label">Filter as sent</span>
          <code>{filter.problem ? "—" : filter.value ? JSON.stringify(toJson(ValueSchema, filter.value)) : "none"}</code>
          <span class="hint">{filter.problem ? "" : describeFilter(filter.value ? toJson(ValueSchema, filter.value) : null)}</span>
        </div>
      </div>
    </CreatePanel>
  );
}
