// The queue page (SPEC §9 "/queue"): run-queue counts, workers busy, and every
// asset's holders and FIFO waiters with their position and time waited.

import { api } from "./api.js";
import { fmtDuration, h, notice, replace } from "./dom.js";
import { onEvents, throttled } from "./live.js";

function card(label, value, key) {
  return h("div", { class: "card", "data-count": key },
    h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}

function jobLink(id) {
  return h("a", { href: `/jobs/${id}` }, `job ${id}`);
}

function lockBlock(lock) {
  const holders = lock.holders.length ? h("ul", { class: "holders", "aria-label": "holders" },
    lock.holders.map((holder) => h("li", { "data-job-id": holder.job_id, "data-role": "holder" },
      jobLink(holder.job_id), ` (${holder.mode})${onNode(holder)}`,
      holder.since ? [" held ", h("span", { class: "waited", "data-since": holder.since },
        waited(holder.since))] : null)))
    : h("p", { class: "muted" }, "no holder");
  const waiters = lock.waiters.length ? h("ol", { class: "waiters", "aria-label": "waiters" },
    lock.waiters.map((waiter, index) => h("li", { "data-job-id": waiter.job_id,
      "data-position": waiter.position ?? index + 1, "data-role": "waiter" },
      `#${waiter.position ?? index + 1} `, jobLink(waiter.job_id), ` (${waiter.mode})${onNode(waiter)} waited `,
      h("span", { class: "waited", "data-since": waiter.since || "" }, waited(waiter.since)))))
    : h("p", { class: "muted" }, "no one waits");
  return h("section", { class: "lock", "data-asset": lock.asset, "aria-label": `asset ${lock.asset}` },
    h("h3", {}, `asset ${lock.asset}`),
    h("div", {}, h("strong", {}, "held by: "), holders),
    h("div", {}, h("strong", {}, "waiting, in order: "), waiters));
}

// A cluster's locks (SPEC §10) name the node of each holder and waiter, and when each
// holder was granted (``since``).
function onNode(entry) {
  return entry.node ? ` on node ${entry.node}` : "";
}

function waited(since) {
  if (!since) return "—";
  return fmtDuration((Date.now() - new Date(since).getTime()) / 1000);
}

export async function mount(root) {
  const cards = h("div", { class: "cards" });
  const locks = h("div", { class: "locks" });
  const message = h("div");
  replace(root, h("h1", {}, "queue"), message, cards, h("h2", {}, "asset locks"), locks);
  const load = async () => {
    let queue;
    let lockList;
    try {
      [queue, lockList] = await Promise.all([api("/v1/queue"), api("/v1/locks")]);
    } catch (error) {
      replace(message, notice(error.message, "error"));
      return;
    }
    replace(message, queue.accepting === false ? notice("not accepting jobs (stopping)") : null);
    replace(cards,
      card("running", queue.running.length, "running"),
      card("queued", queue.queued.length, "queued"),
      card("pending", queue.pending, "pending"),
      card("waiting for a lock", queue.waiting_for_lock.length, "waiting-for-lock"),
      card("workers busy", `${queue.busy_workers} of ${queue.workers}`, "workers"),
      card("queue capacity", queue.capacity, "capacity"));
    const items = lockList.items || [];
    replace(locks, items.length ? items.map(lockBlock) : notice("no asset is held or waited for"));
  };
  const refresh = throttled(load, 300);
  onEvents((batch) => { if (batch.length) refresh(); });
  // The time waited counts up on the page itself (no request).
  setInterval(() => {
    for (const span of locks.querySelectorAll(".waited")) span.textContent = waited(span.dataset.since);
  }, 1000);
  await load();
}
