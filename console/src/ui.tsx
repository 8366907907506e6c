/** Small parts shared by the views: fields, lists, errors, confirmation, times and the backlog chart. */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { can, errorText, listAll } from "./api.ts";
import { historyMs, type Sample, useTick } from "./live.ts";
import { idProblem, payloadKeyProblem } from "./rules.ts";

/** A failed call's message, announced to screen readers. */
export function ErrorLine({ error }: { error?: string }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

/** A finished action's outcome, announced to screen readers. */
export function OkLine({ text }: { text?: string }) {
  return text ? (
    <p class="ok" role="status">
      {text}
    </p>
  ) : null;
}

/** A line saying why some actions are disabled. */
export function ScopeNote({ scopes }: { scopes: string[] }) {
  return scopes.length > 0 ? <p class="note">Disabled: this token lacks {scopes.join(", ")}.</p> : null;
}

let fieldCount = 0;

/** A labelled input with its hint and, when the value breaks a rule, the reason. */
export function Field(props: {
  label: string;
  hint?: string;
  problem?: string;
  children: (id: string, describedBy?: string) => ComponentChildren;
}) {
  const [id] = useState(() => `field-${++fieldCount}`);
  const describedBy = props.problem || props.hint ? `${id}-note` : undefined;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children(id, describedBy)}
      {props.problem ? (
        <span id={describedBy} class="problem">
          {props.problem}
        </span>
      ) : props.hint ? (
        <span id={describedBy} class="hint">
          {props.hint}
        </span>
      ) : null}
    </div>
  );
}

/**
 * A labelled text input (a textarea when `rows` is given) wired to its hint or problem.
 * A field with a problem is marked aria-invalid; `options` adds a datalist of suggestions;
 * `password` hides what is typed.
 */
export function TextField(props: {
  label: string;
  value: string;
  onValue: (value: string) => void;
  hint?: string;
  problem?: string;
  required?: boolean;
  autocomplete?: string;
  password?: boolean;
  inputMode?: "numeric";
  rows?: number;
  options?: string[];
}) {
  return (
    <Field label={props.label} hint={props.hint} problem={props.problem}>
      {(id, describedBy) => {
        const common = {
          id,
          value: props.value,
          onInput: (event: { currentTarget: { value: string } }) => props.onValue(event.currentTarget.value),
          "aria-describedby": describedBy,
          "aria-invalid": props.problem !== undefined,
        };
        if (props.rows !== undefined) return <textarea {...common} rows={props.rows} spellcheck={false} />;
        const input = { ...common, inputMode: props.inputMode, required: props.required, autocomplete: props.autocomplete };
        if (props.password) return <input {...input} type="password" />;
        if (!props.options) return <input {...input} />;
        const listId = `${id}-options`;
        return (
          <>
            <input {...input} list={listId} />
            <datalist id={listId}>
              {props.options.map((option) => (
                <option key={option} value={option} />
              ))}
            </datalist>
          </>
        );
      }}
    </Field>
  );
}

/** The required id of a topic or subscription being created, with the id rules. */
export function IdField(props: { label: string; value: string; onValue: (value: string) => void }) {
  return <TextField {...props} problem={idProblem(props.value)} hint="letters, digits, '-', '.' and '_'" required autocomplete="off" />;
}

/** An optional top-level payload key (a de-duplication or ordering key). */
export function PayloadKeyField(props: { label: string; value: string; onValue: (value: string) => void }) {
  return <TextField {...props} problem={payloadKeyProblem(props.value)} hint="a top-level payload key" autocomplete="off" />;
}

/**
 * A collapsible "Create a …" panel: its form (labelled by the summary) with the fields given as children, then the submit
 * button (disabled without `scope`, while `invalid` or while the action runs), the scope note, the action's error and `result`.
 */
export function CreatePanel(props: {
  title: string;
  titleId: string;
  submit: string;
  scope: string;
  invalid: boolean;
  action: { busy: boolean; error?: string };
  onSubmit: (event: Event) => void;
  children: ComponentChildren;
  result: ComponentChildren;
}) {
  const allowed = can(props.scope);
  return (
    <details class="panel create">
      <summary id={props.titleId}>{props.title}</summary>
      <form onSubmit={props.onSubmit} aria-labelledby={props.titleId}>
        {props.children}
        <button type="submit" disabled={!allowed || props.invalid || props.action.busy}>
          {props.submit}
        </button>
        {!allowed ? <ScopeNote scopes={[props.scope]} /> : null}
        <ErrorLine error={props.action.error} />
        {props.result}
      </form>
    </details>
  );
}

/** Every item of a paged list call, loaded again at each refresh while `readable`, and the last load's error. */
export function useListAll<T>(readable: boolean, page: (offset: number, limit: number) => Promise<{ data: T[] }>) {
  const tick = useTick();
  const [items, setItems] = useState<T[]>();
  const [error, setError] = useState<string>();
  // Not `page`: it is a new function each render; the tick is what reloads.
  useEffect(() => {
    if (!readable) return;
    listAll(page).then(
      (data) => {
        setItems(data);
        setError(undefined);
      },
      (failure) => setError(errorText(failure)),
    );
  }, [tick, readable]);
  return { items, error };
}

/** Runs actions that call the API, one at a time, keeping whether one is running and the last one's error. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  async function run<T>(action: () => Promise<T>): Promise<T | undefined> {
    setBusy(true);
    setError(undefined);
    try {
      return await action();
    } catch (failure) {
      setError(errorText(failure));
      return undefined;
    } finally {
      setBusy(false);
    }
  }
  return { busy, error, setError, run };
}

/** Asks the operator to confirm a destructive action in a modal dialog; resolves true when confirmed. */
export function confirmAction(question: string, action: string): Promise<boolean> {
  // A native <dialog> traps focus, closes on Escape and gives focus back to the button that opened it.
  const dialog = document.createElement("dialog");
  dialog.className = "confirm";
  dialog.setAttribute("aria-labelledby", "confirm-question");
  const form = document.createElement("form");
  form.method = "dialog";
  const text = document.createElement("p");
  text.id = "confirm-question";
  text.textContent = question;
  const cancel = document.createElement("button");
  cancel.value = "cancel";
  cancel.textContent = "Cancel";
  const confirm = document.createElement("button");
  confirm.value = "confirm";
  confirm.className = "danger";
  confirm.textContent = action;
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  buttons.append(cancel, confirm);
  form.append(text, buttons);
  dialog.append(form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    dialog.showModal();
    // Cancel is the safe default for Enter.
    cancel.focus();
  });
}

/** A timestamp as local date and time, with the exact UTC time on hover. */
export function Time({ value }: { value?: Timestamp }) {
  if (!value) return <span>—</span>;
  const date = timestampDate(value);
  return (
    <time dateTime={date.toISOString()} title={date.toISOString()}>
      {date.toLocaleString()}
    </time>
  );
}

/** A small line chart of a subscription's backlog over the last ten minutes (or since the console opened). */
export function BacklogChart({ samples }: { samples: Sample[] }) {
  const width = 120;
  const height = 32;
  const now = Date.now();
  // Until the console has watched for ten minutes, the chart spans what it has seen (at least a minute).
  const span = Math.min(historyMs, Math.max(60_000, now - (samples[0]?.at ?? now)));
  const peak = Math.max(1, ...samples.map((sample) => sample.backlog));
  const last = samples.at(-1)?.backlog ?? 0;
  const points = samples
    .map((sample) => {
      const x = ((sample.at - (now - span)) / span) * width;
      const y = height - 2 - (sample.backlog / peak) * (height - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
  return (
    <svg class="chart" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img">
      <title>{`Backlog over the last ${Math.round(span / 60_000)} min: ${last} now, peak ${peak}`}</title>
      <line x1="0" y1={height - 2} x2={width} y2={height - 2} class="axis" />
      {samples.length > 1 ? <polyline points={points} /> : null}
      {samples.length > 0 ? <circle cx={width} cy={height - 2 - (last / peak) * (height - 4)} r="2" /> : null}
    </svg>
  );
}

/** Pretty-printed JSON. */
export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}
