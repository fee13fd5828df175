// Which operations the page offers: those the job's state allows (the rules are
// generated from jobd.states), and that the caller's role may ask for (SPEC §11).

import { roleAllows } from "./api.js";
import { EDITABLE, OPERATIONS } from "./rules.js";

export const STATES = [
  "draft", "tentative", "confirmed", "pending", "queued", "waiting-for-lock", "running",
  "cancel-requested", "paused", "completed", "failed", "timed-out", "canceled",
  "ready-for-invoice", "invoiced",
];

/** The operations allowed for ``job`` in its state (``stop`` only for a live window). */
export function allowedFor(job, roleName) {
  return Object.keys(OPERATIONS).filter((op) =>
    OPERATIONS[op].includes(job.state) && roleAllows(roleName, op) &&
    (op !== "stop" || Boolean(job.end_at)));
}

/** Operations allowed for at least one job in a state of ``states``. */
export function allowedForStates(states, roleName) {
  return Object.keys(OPERATIONS).filter((op) =>
    roleAllows(roleName, op) && states.some((state) => OPERATIONS[op].includes(state)));
}

export function editable(job, roleName) {
  return EDITABLE.includes(job.state) && roleAllows(roleName, "edit");
}
