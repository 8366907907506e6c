/** The topics view: list, create, delete, and publish a test message. */
import { useState } from "preact/hooks";
import type { Topic } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { api, can } from "./api.ts";
import { refreshNow } from "./live.ts";
import { idProblem, parseCount, parsePayloads, payloadKeyProblem } from "./rules.ts";
import {
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
  useListAll,
} from "./ui.tsx";

/** Lists the topics, with a form to create one and, per topic, publish and delete. */
export function TopicsView() {
  const [publishing, setPublishing] = useState<string>();
  const readable = can("topics:read");
  const { items: topics, error } = useListAll<Topic>(readable, (offset, limit) => api.topics.listTopics({ offset, limit }));

  return (
    <section aria-labelledby="topics-title">
      <h1 id="topics-title">Topics</h1>
      <CreateTopicForm />
      <h2>All topics</h2>
      {!readable ? <ScopeNote scopes={["topics:read"]} /> : null}
      <ErrorLine error={error} />
      {topics && topics.length === 0 ? <p>No topics yet.</p> : null}
      {topics && topics.length > 0 ? (
        <div class="table">
          <table>
            <thead>
              <tr>
                <th scope="col">Topic</th>
                <th scope="col">Created</th>
                <th scope="col">De-duplication</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {topics.map((topic) => (
                <TopicRow key={topic.id} topic={topic} onPublish={() => setPublishing(topic.id)} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {publishing ? <PublishForm topicId={publishing} onClose={() => setPublishing(undefined)} /> : null}
    </section>
  );
}

function TopicRow({ topic, onPublish }: { topic: Topic; onPublish: () => void }) {
  const action = useAction();
  async function remove() {
    if (!(await confirmAction(`Delete topic "${topic.id}" with all its subscriptions and their messages?`, "Delete topic"))) return;
    await action.run(() => api.topics.deleteTopic({ id: topic.id }));
    refreshNow();
  }
  return (
    <tr>
      <th scope="row">{topic.id}</th>
      <td>
        <Time value={topic.createdAt} />
      </td>
      <td>{topic.dedupKey ? `${topic.dedupKey}, ${topic.dedupWindowSeconds ?? 600} s` : "—"}</td>
      <td class="actions">
        <div class="buttons">
          <button type="button" onClick={onPublish} disabled={!can("topics:publish", topic.id)} aria-label={`Publish to ${topic.id}`}>
            Publish…
          </button>
          <button
            type="button"
            class="danger"
            onClick={remove}
            disabled={action.busy || !can("topics:delete", topic.id)}
            aria-label={`Delete ${topic.id}`}
          >
            Delete
          </button>
        </div>
        <ErrorLine error={action.error} />
      </td>
    </tr>
  );
}

function CreateTopicForm() {
  const [id, setId] = useState("");
  const [dedupKey, setDedupKey] = useState("");
  const [windowText, setWindowText] = useState("");
  const [created, setCreated] = useState<string>();
  const action = useAction();
  const window = parseCount(windowText, 1, 86_400);
  const windowProblem = window.problem ?? (window.value !== undefined && dedupKey === "" ? "needs a de-duplication key" : undefined);
  const invalid = id === "" || idProblem(id) !== undefined || payloadKeyProblem(dedupKey) !== undefined || windowProblem !== undefined;

  async function submit(event: Event) {
    event.preventDefault();
    const topic = await action.run(() => api.topics.createTopic({ id, dedupKey: dedupKey || undefined, dedupWindowSeconds: window.value }));
    if (topic) {
      setCreated(topic.id);
      setId("");
      setDedupKey("");
      setWindowText("");
      refreshNow();
    }
  }

  return (
    <CreatePanel
      title="Create a topic"
      titleId="create-topic-title"
      submit="Create topic"
      scope="topics:create"
      invalid={invalid}
      action={action}
      onSubmit={submit}
      result={<OkLine text={created && !action.error ? `Created topic ${created}.` : undefined} />}
    >
      <div class="fields">
        <IdField label="Topic id" value={id} onValue={setId} />
        <PayloadKeyField label="De-duplication key (optional)" value={dedupKey} onValue={setDedupKey} />
        <TextField
          label="De-duplication window, seconds"
          value={windowText}
          onValue={setWindowText}
          problem={windowProblem}
          hint="1 to 86400; 600 when empty"
          inputMode="numeric"
        />
      </div>
    </CreatePanel>
  );
}

const examplePayload = '{\n  "event": "user.login",\n  "country": "BR"\n}';

function PublishForm({ topicId, onClose }: { topicId: string; onClose: () => void }) {
  const [text, setText] = useState(examplePayload);
  const [delayText, setDelayText] = useState("");
  const [sent, setSent] = useState<string>();
  const action = useAction();
  const payloads = parsePayloads(text);
  const delay = parseCount(delayText, 0, 31_536_000);

  async function submit(event: Event) {
    event.preventDefault();
    if (!payloads.value) return;
    const count = payloads.value.length;
    const done = await action.run(() => api.topics.publishMessages({ topicId, messages: payloads.value ?? [], delaySeconds: delay.value }));
    if (done) {
      setSent(`Published ${count} message${count === 1 ? "" : "s"} to ${topicId}${delay.value ? `, held for ${delay.value} s` : ""}.`);
      refreshNow();
    }
  }

  return (
    <form class="panel" onSubmit={submit} aria-labelledby="publish-title">
      <h2 id="publish-title">Publish to {topicId}</h2>
      <TextField
        label="Message JSON"
        value={text}
        onValue={(value) => {
          setText(value);
          setSent(undefined);
        }}
        problem={payloads.problem}
        hint="one JSON object, or an array of up to 1000"
        rows={8}
      />
      <TextField
        label="Delay, seconds (optional)"
        value={delayText}
        onValue={setDelayText}
        problem={delay.problem}
        hint="0 to 31536000"
        inputMode="numeric"
      />
      <div class="buttons">
        <button type="submit" disabled={!payloads.value || delay.problem !== undefined || action.busy}>
          Publish
        </button>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
      <ErrorLine error={action.error} />
      <OkLine text={action.error ? undefined : sent} />
    </form>
  );
}
