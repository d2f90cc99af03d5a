// The store through the official JS SDK against a running lg-deploy (LG_URL, LG_API_KEY).
// Run by tests/test_item_store_js.py; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.LG_URL, apiKey: process.env.LG_API_KEY });
const annNotes = ["users", "ann", "notes"];
const bobNotes = ["users", "bob", "notes"];
const theme = { color: "dark", tags: ["a", "b"], nested: { deep: [1, { x: null }] }, text: "héllo ✓" };

await client.store.putItem(["users", "ann", "prefs"], "theme", theme);
await client.store.putItem(annNotes, "n1", { topic: "tax", score: 5 });
await client.store.putItem(annNotes, "n2", { topic: "cars", score: 7 });
await client.store.putItem(bobNotes, "n1", { topic: "tax", score: 9 });
await client.store.putItem(annNotes, "expiring", { topic: "kept an hour" }, { ttl: 60 });

const item = await client.store.getItem(["users", "ann", "prefs"], "theme");
assert.deepEqual(item.value, theme);
assert.deepEqual(item.namespace, ["users", "ann", "prefs"]);
assert.equal(item.key, "theme");
assert.equal(item.createdAt, item.created_at);
assert.ok(!Number.isNaN(Date.parse(item.updatedAt)));
assert.equal(await client.store.getItem(["nobody"], "nothing"), null);

const taxes = await client.store.searchItems(["users"], { filter: { topic: "tax" } });
const where = (found) => found.items.map((i) => [...i.namespace, i.key].join("/"));
assert.deepEqual(where(taxes), ["users/bob/notes/n1", "users/ann/notes/n1"]);
const paged = await client.store.searchItems(["users", "ann"], { limit: 1, offset: 1 });
assert.equal(paged.items.length, 1);
assert.equal(paged.items[0].score, null);

const all = await client.store.listNamespaces();
assert.deepEqual(all.namespaces, [annNotes, ["users", "ann", "prefs"], bobNotes]);
const notes = await client.store.listNamespaces({ suffix: ["notes"], maxDepth: 3 });
assert.deepEqual(notes.namespaces, [annNotes, bobNotes]);
const people = await client.store.listNamespaces({ prefix: ["users"], maxDepth: 2 });
assert.deepEqual(people.namespaces, [["users", "ann"], ["users", "bob"]]);

await client.store.deleteItem(annNotes, "n2");
assert.equal(await client.store.getItem(annNotes, "n2"), null);
await assert.rejects(client.store.putItem(["langgraph"], "k", { v: 1 }), /422/);
await assert.rejects(client.store.listNamespaces({ maxDepth: 0 }), /422/);
console.log("store: all assertions held");
