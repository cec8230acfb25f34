// The sign-in page: a password form that sets the session cookie, then goes back to the page that sent here.

import { clearError, getJson, request, showError } from "/static/api.js";

const byId = (id) => document.getElementById(id);

// The page to open after signing in: a path on this site only, never another site's address.
function nextPath() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  const sameSite = next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\");
  return sameSite && !next.startsWith("/signin") ? next : "/";
}

function showState(text, link) {
  const element = byId("signin-state");
  element.replaceChildren(text);
  if (link) {
    const anchor = document.createElement("a");
    anchor.href = nextPath();
    anchor.textContent = link;
    element.append(" ", anchor);
  }
}

async function signIn(event) {
  event.preventDefault();
  const button = byId("signin-submit");
  const errorBox = byId("signin-error");
  clearError(errorBox);
  button.disabled = true;
  try {
    await request("/api/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ name: byId("signin-name").value, password: byId("signin-password").value }),
      signInRedirect: false,
    });
    window.location.assign(nextPath());
  } catch (error) {
    showError(errorBox, error);
    byId("signin-password").select();
    button.disabled = false;
  }
}

async function start() {
  byId("signin-form").addEventListener("submit", signIn);
  let state;
  try {
    state = await getJson("/api/session");
  } catch (error) {
    byId("signin-form").hidden = false;
    showError(byId("signin-error"), error);
    return;
  }
  if (state.auth !== "required") {
    showState("This lab is open on this computer, so there is no sign-in.", "Continue");
    return;
  }
  if (state.user) {
    showState(`You are signed in as ${state.user.name}.`, "Continue");
  }
  byId("signin-form").hidden = false;
  byId("signin-name").focus();
}

start();
