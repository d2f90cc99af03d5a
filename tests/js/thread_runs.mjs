// Runs on threads through the official JS SDK against a running lg-deploy (LG_URL, LG_API_KEY):
// conversations, human in the loop, state and history, double-texting, cancel and delete.
// Run by tests/test_thread_runs_js.py; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.LG_URL, apiKey: process.env.LG_API_KEY });
const DEADLINE_MS = 20_000;
const POLL_MS = 100;

// Poll `check` until it is true; fail naming `what` after DEADLINE_MS.
async function until(what, check) {
  const deadline = Date.now() + DEADLINE_MS;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

// A conversation: the second turn sees the first; context and configurable reach the graph.
const chat = (await client.threads.create()).thread_id;
const first = await client.runs.wait(chat, "chat", {
  input: { message: "hi" },
  context: { user: "ann" },
});
assert.deepEqual(first.replies, ["turn 1 for ann: hi"]);
const second = await client.runs.wait(chat, "chat", {
  input: { message: "again" },
  config: { configurable: { user_id: "bob" } },
});
assert.deepEqual(second.messages, ["hi", "again"]);
assert.equal(second.replies.at(-1), "turn 2 for bob: again");
const talked = await client.threads.get(chat);
assert.equal(talked.status, "idle");
assert.equal(talked.metadata.graph_id, "chat");
const chatRuns = await client.runs.list(chat);
assert.deepEqual(chatRuns.map((r) => r.status), ["success", "success"]);

// Human in the loop: interrupt() stops the run, a resume finishes it without rerunning prepare.
const approval = (await client.threads.create()).thread_id;
const stopped = await client.runs.wait(approval, "approval", { input: { request: "leave" } });
assert.ok(Array.isArray(stopped.__interrupt__), JSON.stringify(stopped));
assert.equal(stopped.__interrupt__[0].value.question, "approve leave?");
const waiting = await client.threads.get(approval);
assert.equal(waiting.status, "interrupted");
assert.equal(typeof waiting.interrupts, "object");
assert.ok(Object.keys(waiting.interrupts).length > 0, JSON.stringify(waiting.interrupts));
const pending = await client.threads.getState(approval);
assert.deepEqual(pending.next, ["ask"]);
assert.ok(pending.tasks[0].interrupts.length > 0, JSON.stringify(pending.tasks));
const resumed = await client.runs.wait(approval, "approval", { command: { resume: "yes" } });
assert.equal(resumed.decision, "approved");
assert.deepEqual(resumed.steps, ["prepare", "ask", "act"]);
assert.equal((await client.threads.get(approval)).status, "idle");

// History: newest first, each state's parent the next one in the list.
const history = await client.threads.getHistory(approval);
assert.ok(history.length > 2, `history has ${history.length} states`);
assert.deepEqual(history[0].next, []);
assert.equal(typeof history[1].checkpoint.checkpoint_id, "string");
assert.equal(history[0].parent_checkpoint.checkpoint_id, history[1].checkpoint.checkpoint_id);

// Double-texting: reject is a 409 while a run is in flight; enqueue runs after it.
const busy = (await client.threads.create()).thread_id;
const slow = await client.runs.create(busy, "sleep", { input: { seconds: 2 } });
await assert.rejects(
  client.runs.create(busy, "sleep", { input: { seconds: 0.1 }, multitaskStrategy: "reject" }),
  /409/,
);
const queued = await client.runs.create(busy, "sleep", {
  input: { seconds: 0.1 },
  multitaskStrategy: "enqueue",
});
assert.deepEqual(await client.runs.join(busy, queued.run_id), { slept: 0.1 });
const busyRuns = await client.runs.list(busy);
assert.deepEqual(
  busyRuns.map((r) => [r.run_id, r.status]),
  [
    [queued.run_id, "success"],
    [slow.run_id, "success"],
  ],
);
assert.ok(new Date(busyRuns[0].created_at) > new Date(busyRuns[1].created_at));

// An unknown thread: 404, unless ifNotExists is "create".
const missing = randomUUID();
await assert.rejects(client.runs.create(missing, "echo", { input: { a: 1 } }), /404/);
const made = await client.runs.create(missing, "echo", {
  input: { a: 1 },
  ifNotExists: "create",
});
assert.deepEqual(await client.runs.join(missing, made.run_id), { a: 1 });
assert.equal((await client.runs.get(missing, made.run_id)).status, "success");

// Cancel: a running run ends interrupted and its thread goes back to idle.
const cancelled = (await client.threads.create()).thread_id;
const long = await client.runs.create(cancelled, "sleep", { input: { seconds: 30 } });
await until(
  "the long run to be running",
  async () => (await client.runs.get(cancelled, long.run_id)).status === "running",
);
await client.runs.cancel(cancelled, long.run_id);
await client.runs.join(cancelled, long.run_id);
assert.equal((await client.runs.get(cancelled, long.run_id)).status, "interrupted");
assert.equal((await client.threads.get(cancelled)).status, "idle");

// Delete: a finished run goes, and is a 404 after.
await client.runs.delete(missing, made.run_id);
await assert.rejects(client.runs.get(missing, made.run_id), /404/);
// Rollback: the run in flight is forgotten with its note; the thread goes on without it.
const rolled = (await client.threads.create()).thread_id;
await client.runs.wait(rolled, "notes", { input: { note: "a" } });
const doomed = await client.runs.create(rolled, "notes", { input: { note: "b", seconds: 60 } });
await until("the doomed run's note to be saved", async () => {
  const notes = (await client.threads.getState(rolled)).values.notes;
  return JSON.stringify(notes) === JSON.stringify(["a", "b"]);
});
const after = await client.runs.create(rolled, "notes", {
  input: { note: "c" },
  multitaskStrategy: "rollback",
});
assert.deepEqual((await client.runs.join(rolled, after.run_id)).notes, ["a", "c"]);
await assert.rejects(client.runs.get(rolled, doomed.run_id), /404/);
const late = await client.runs.create(rolled, "notes", { input: { note: "d", seconds: 60 } });
await until("the late run's note to be saved", async () => {
  const notes = (await client.threads.getState(rolled)).values.notes;
  return notes.length === 3;
});
await client.runs.cancel(rolled, late.run_id, true, "rollback");
await assert.rejects(client.runs.get(rolled, late.run_id), /404/);
assert.deepEqual((await client.threads.getState(rolled)).values.notes, ["a", "c"]);

// Commands: goto with an update runs the node; a resume with an update applies both.
const steered = (await client.threads.create()).thread_id;
await client.runs.wait(steered, "approval", { input: { request: "car" } });
const jumped = await client.runs.wait(steered, "approval", {
  command: { update: { answer: "yes" }, goto: "act" },
});
assert.deepEqual([jumped.steps, jumped.decision], [["prepare", "act"], "approved"]);
const answered = await client.runs.wait(steered, "approval", {
  command: { update: { request: "bike" }, resume: "no" },
});
assert.deepEqual([answered.request, answered.decision], ["bike", "refused"]);

// Copy: a new thread with the conversation's state, which then goes its own way.
const twin = await client.threads.copy(chat);
assert.notEqual(twin.thread_id, chat);
assert.deepEqual(
  (await client.threads.getState(twin.thread_id)).values,
  (await client.threads.getState(chat)).values,
);
const forked = await client.runs.wait(twin.thread_id, "chat", { input: { message: "fork" } });
assert.deepEqual(forked.messages, ["hi", "again", "fork"]);
assert.deepEqual((await client.threads.getState(chat)).values.messages, ["hi", "again"]);

// Subgraph state: the interrupt inside a subgraph shows in its task's own state.
const nested = (await client.threads.create()).thread_id;
await client.runs.wait(nested, "nested", { input: { topic: "colour" } });
const deep = await client.threads.getState(nested, undefined, { subgraphs: true });
assert.deepEqual(deep.tasks[0].state.next, ["ask_inside"]);
assert.deepEqual(await client.runs.wait(nested, "nested", { command: { resume: "blue" } }), {
  topic: "colour",
  answer: "blue",
});
console.log("thread runs: all assertions held");
