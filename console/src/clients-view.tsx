/** The clients view: list, create (the secret shown once), update scopes, disable, delete. */
import { useState } from "preact/hooks";
import type { Client } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { api, can, currentSession } from "./api.ts";
import { refreshNow } from "./live.ts";
import { nameProblem, scopesProblem } from "./rules.ts";
import { CreatePanel, confirmAction, ErrorLine, ScopeNote, TextField, Time, useAction, useListAll } from "./ui.tsx";

/** Lists the API's clients, with a form to create one. */
export function ClientsView() {
  const readable = can("clients:read");
  const { items: clients, error } = useListAll<Client>(readable, (offset, limit) => api.clients.listClients({ offset, limit }));

  return (
    <section aria-labelledby="clients-title">
      <h1 id="clients-title">Clients</h1>
      <p class="note">
        Clients get access tokens at /oauth/token. Changing a client (scopes, name or state) or deleting it revokes its tokens at once.
      </p>
      <CreateClientForm />
      <h2>All clients</h2>
      {!readable ? <ScopeNote scopes={["clients:read"]} /> : null}
      <ErrorLine error={error} />
      {clients && clients.length > 0 ? (
        <ul class="clients">
          {clients.map((client) => (
            <ClientItem key={`${client.id}-${client.tokenVersion}`} client={client} />
          ))}
        </ul>
      ) : null}
    </section>
  );
}

const scopesHint = "space-separated: * or e.g. topics:read subscriptions:consume:orders-worker";

function ClientItem({ client }: { client: Client }) {
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(client.name);
  const [scopes, setScopes] = useState(client.scopes);
  const action = useAction();
  const mine = client.id === currentSession().clientId;
  const updatable = can("clients:update", client.id);
  const signOutNote = mine ? " This is the console's own client: you will be signed out." : "";

  async function update(changes: { name?: string; scopes?: string; isActive?: boolean }, question?: string) {
    if (question && !(await confirmAction(question + signOutNote, "Confirm"))) return;
    const answer = await action.run(() =>
      api.clients.updateClient({ id: client.id, name: client.name, scopes: client.scopes, isActive: client.isActive, ...changes }),
    );
    if (answer) {
      setEditing(false);
      refreshNow();
    }
  }

  async function remove() {
    if (!(await confirmAction(`Delete client "${client.name}"? Its tokens stop working at once.${signOutNote}`, "Delete client"))) return;
    await action.run(() => api.clients.deleteClient({ id: client.id }));
    refreshNow();
  }

  return (
    <li class="panel client" data-client={client.id}>
      <h3>
        {client.name} {client.isActive ? null : <span class="badge">disabled</span>}
        {mine ? <span class="badge">this console</span> : null}
      </h3>
      <dl>
        <dt>Id</dt>
        <dd>
          <code>{client.id}</code>
        </dd>
        <dt>Scopes</dt>
        <dd>
          <code>{client.scopes}</code>
        </dd>
        <dt>Created</dt>
        <dd>
          <Time value={client.createdAt} />
        </dd>
      </dl>
      {editing ? (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            update({ name, scopes: scopes.trim() }, `Save client "${client.name}"? Its current tokens are revoked.`);
          }}
        >
          <div class="fields">
            <TextField label="Name" value={name} onValue={setName} problem={nameProblem(name)} />
            <TextField label="Scopes" value={scopes} onValue={setScopes} problem={scopesProblem(scopes)} hint={scopesHint} />
          </div>
          <div class="buttons">
            <button type="submit" disabled={nameProblem(name) !== undefined || scopesProblem(scopes) !== undefined || action.busy}>
              Save
            </button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <div class="buttons">
          <button type="button" onClick={() => setEditing(true)} disabled={!updatable}>
            Edit scopes
          </button>
          <button
            type="button"
            class={client.isActive ? "danger" : ""}
            onClick={() =>
              update(
                { isActive: !client.isActive },
                client.isActive ? `Disable client "${client.name}"? Its tokens stop working at once.` : undefined,
              )
            }
            disabled={!updatable || action.busy}
          >
            {client.isActive ? "Disable" : "Enable"}
          </button>
          <button type="button" class="danger" onClick={remove} disabled={!can("clients:delete", client.id) || action.busy}>
            Delete
          </button>
        </div>
      )}
      <ErrorLine error={action.error} />
    </li>
  );
}

function CreateClientForm() {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState("");
  const [active, setActive] = useState(true);
  const [created, setCreated] = useState<{ id: string; secret: string; name: string }>();
  const [copied, setCopied] = useState(false);
  const action = useAction();
  const problems = { name: name === "" ? undefined : nameProblem(name), scopes: scopes === "" ? undefined : scopesProblem(scopes) };
  const invalid = name.trim() === "" || scopes.trim() === "" || problems.name !== undefined || problems.scopes !== undefined;

  async function submit(event: Event) {
    event.preventDefault();
    const answer = await action.run(() => api.clients.createClient({ name: name.trim(), scopes: scopes.trim(), isActive: active }));
    if (answer) {
      setCreated({ id: answer.id, secret: answer.secret, name });
      setCopied(false);
      setName("");
      setScopes("");
      refreshNow();
    }
  }

  async function copy() {
    if (!created) return;
    await navigator.clipboard.writeText(created.secret);
    setCopied(true);
  }

  return (
    <CreatePanel
      title="Create a client"
      titleId="create-client-title"
      submit="Create client"
      scope="clients:create"
      invalid={invalid}
      action={action}
      onSubmit={submit}
      result={
        created ? (
          <div class="secret" role="status">
            <p>Created client {created.name}. Its secret is shown this once: copy it now.</p>
            <dl>
              <dt>Client id</dt>
              <dd>
                <code data-field="client-id">{created.id}</code>
              </dd>
              <dt>Client secret</dt>
              <dd>
                <code data-field="client-secret">{created.secret}</code>
              </dd>
            </dl>
            <div class="buttons">
              <button type="button" onClick={copy}>
                {copied ? "Copied" : "Copy secret"}
              </button>
              <button type="button" onClick={() => setCreated(undefined)}>
                Done
              </button>
            </div>
          </div>
        ) : null
      }
    >
      <div class="fields">
        <TextField label="Name" value={name} onValue={setName} problem={problems.name} autocomplete="off" />
        <TextField label="Scopes" value={scopes} onValue={setScopes} problem={problems.scopes} hint={scopesHint} autocomplete="off" />
        <div class="field checkbox">
          <label>
            <input type="checkbox" checked={active} onChange={(event) => setActive(event.currentTarget.checked)} /> Active
          </label>
        </div>
      </div>
    </CreatePanel>
  );
}
