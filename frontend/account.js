// The signed-in user in the page header, with a sign-out button, when the lab requires sign-in.

import { getJson, request } from "/static/api.js";

let state = null;

/** Return the sign-in state: {auth: "off" | "required", user: {name, is_admin, ...} | null}. */
export function currentAccount() {
  if (state === null) {
    state = getJson("/api/session").catch(() => ({ auth: "off", user: null }));
  }
  return state;
}

/** True when the user may cancel, rename or delete the study: its owner, an admin, or anyone in an open lab. */
export function canChangeStudy(account, study) {
  if (account.auth !== "required") {
    return true;
  }
  if (!account.user) {
    return false;
  }
  return account.user.is_admin || study.owner === account.user.name;
}

async function signOut(button) {
  button.disabled = true;
  try {
    await request("/api/session", { method: "DELETE" });
  } finally {
    window.location.assign("/signin");
  }
}

async function showAccount() {
  const account = await currentAccount();
  const header = document.querySelector(".site-header");
  if (!header || account.auth !== "required" || !account.user) {
    return;
  }
  const box = document.createElement("div");
  box.className = "account";
  box.dataset.testid = "account";
  const label = document.createElement("span");
  label.append("Signed in as ");
  const name = document.createElement("strong");
  name.dataset.testid = "account-name";
  name.textContent = account.user.name;
  label.append(name);
  if (account.user.is_admin) {
    label.append(" (admin)");
  }
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.testid = "sign-out";
  button.textContent = "Sign out";
  button.addEventListener("click", () => signOut(button));
  box.append(label, button);
  header.append(box);
}

showAccount();
