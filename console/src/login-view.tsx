/** The login form: a client id and secret, exchanged for an access token. */
import { useState } from "preact/hooks";
import { signIn } from "./api.ts";
import { ErrorLine, TextField, useAction } from "./ui.tsx";

/** Asks for a client's credentials and signs in with them; `notice` says why the operator is here again. */
export function LoginView({ notice }: { notice?: string }) {
  const [clientId, setClientId] = useState("");
  const [secret, setSecret] = useState("");
  const action = useAction();

  async function submit(event: Event) {
    event.preventDefault();
    await action.run(() => signIn(clientId.trim(), secret));
  }

  return (
    <main class="login">
      <form class="panel" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Sign in to fastpubsub</h1>
        <p>
          Authentication is on: sign in with a client's id and secret (from create_client or the Clients view). The token stays in this
          tab's memory.
        </p>
        {notice ? (
          <p class="error" role="alert">
            {notice}
          </p>
        ) : null}
        <TextField label="Client id" value={clientId} onValue={setClientId} autocomplete="username" required />
        <TextField label="Client secret" password value={secret} onValue={setSecret} autocomplete="current-password" required />
        <button type="submit" disabled={action.busy || clientId.trim() === "" || secret === ""}>
          Sign in
        </button>
        <ErrorLine error={action.error} />
      </form>
    </main>
  );
}
