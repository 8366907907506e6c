/** The operator console: a single page over the public API, routed by the URL's hash. */
import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { currentSession, endSession, errorText, probeAuth, watchSession } from "./api.ts";
import { ClientsView } from "./clients-view.tsx";
import { DlqView } from "./dlq-view.tsx";
import { refreshChoices, refreshInterval, setRefreshInterval } from "./live.ts";
import { LoginView } from "./login-view.tsx";
import { SubscriptionsView } from "./subscriptions-view.tsx";
import { TopicsView } from "./topics-view.tsx";

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function useSession() {
  const [session, setSession] = useState(currentSession());
  useEffect(() => watchSession(() => setSession(currentSession())), []);
  return session;
}

function App() {
  const session = useSession();
  const hash = useHash();
  const [probeError, setProbeError] = useState<string>();
  const [interval, setIntervalChoice] = useState(refreshInterval());

  useEffect(() => {
    if (session.auth !== "unknown") return;
    probeAuth().catch((error) => setProbeError(errorText(error)));
  }, [session.auth]);

  if (session.auth === "unknown") {
    return (
      <main class="login">
        {probeError ? (
          <p class="error" role="alert">
            Cannot reach the API: {probeError}{" "}
            <button type="button" onClick={() => location.reload()}>
              Try again
            </button>
          </p>
        ) : (
          <p>Connecting…</p>
        )}
      </main>
    );
  }
  if (session.auth === "on" && !session.token) return <LoginView notice={session.notice} />;

  const dlq = /^#\/subscriptions\/([^/]+)\/dlq$/.exec(hash);
  const view = dlq ? "dlq" : hash.startsWith("#/subscriptions") ? "subscriptions" : hash.startsWith("#/clients") ? "clients" : "topics";
  const links = [
    { href: "#/topics", label: "Topics", current: view === "topics" },
    { href: "#/subscriptions", label: "Subscriptions", current: view === "subscriptions" || view === "dlq" },
    ...(session.auth === "on" ? [{ href: "#/clients", label: "Clients", current: view === "clients" }] : []),
  ];

  return (
    <>
      <header>
        <span class="brand">fastpubsub</span>
        <nav aria-label="Views">
          {links.map((link) => (
            <a key={link.href} href={link.href} aria-current={link.current ? "page" : undefined}>
              {link.label}
            </a>
          ))}
        </nav>
        <div class="session">
          <label>
            Refresh{" "}
            <select
              value={interval}
              onChange={(event) => {
                const seconds = Number(event.currentTarget.value);
                setRefreshInterval(seconds);
                setIntervalChoice(seconds);
              }}
            >
              {refreshChoices.map((seconds) => (
                <option key={seconds} value={seconds}>
                  {seconds ? `every ${seconds} s` : "off"}
                </option>
              ))}
            </select>
          </label>
          {session.auth === "on" ? (
            <>
              <span class="scopes" title={[...session.scopes].join(" ")}>
                Scopes: <code>{[...session.scopes].join(" ")}</code>
              </span>
              <button type="button" onClick={() => endSession()}>
                Sign out
              </button>
            </>
          ) : (
            <span class="scopes">Authentication off</span>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {view === "dlq" && dlq?.[1] ? (
          <DlqView key={dlq[1]} subscriptionId={decodeURIComponent(dlq[1])} />
        ) : view === "subscriptions" ? (
          <SubscriptionsView />
        ) : view === "clients" ? (
          <ClientsView />
        ) : (
          <TopicsView />
        )}
      </main>
    </>
  );
}

const root = document.getElementById("app");
if (root) {
  root.textContent = "";
  render(<App />, root);
}
