// The templates section of the home page: one-click studies that reproduce published
// findings. A click creates the template's study with the chosen preset and opens it.

import { clearError, getJson, postJson, showError } from "/static/api.js";

const byId = (id) => document.getElementById(id);

function presetButton(template, preset) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = preset.name === "quick" ? "primary" : "";
  button.dataset.testid = "template-create";
  button.dataset.template = template.name;
  button.dataset.preset = preset.name;
  const runs = preset.runs === 1 ? "1 run" : `${preset.runs} runs`;
  button.textContent = `Create ${preset.name} study (${runs})`;
  button.title = preset.description;
  button.addEventListener("click", () => createStudy(template, preset, button));
  return button;
}

async function createStudy(template, preset, button) {
  const error = byId("templates-error");
  clearError(error);
  button.disabled = true;
  const state = byId("templates-state");
  state.textContent = `Creating "${template.title}" (${preset.name})…`;
  try {
    const study = await postJson(`/api/templates/${encodeURIComponent(template.name)}/studies`, {
      preset: preset.name,
    });
    window.location.assign(`/studies/${study.id}`);
  } catch (failure) {
    showError(error, failure);
    state.textContent = "";
    button.disabled = false;
  }
}

function templateCard(template) {
  const item = document.createElement("li");
  item.className = "template-card";
  item.dataset.testid = "template";
  item.dataset.template = template.name;
  const title = document.createElement("h3");
  title.textContent = template.title;
  const shows = document.createElement("p");
  shows.textContent = template.shows;
  const presets = document.createElement("p");
  presets.className = "hint";
  presets.textContent = template.presets
    .map((preset) => `${preset.name}: ${preset.description}`)
    .join(". ");
  const actions = document.createElement("div");
  actions.className = "template-actions";
  actions.append(...template.presets.map((preset) => presetButton(template, preset)));
  item.append(title, shows, presets, actions);
  return item;
}

async function showTemplates() {
  try {
    const { templates } = await getJson("/api/templates");
    byId("template-list").replaceChildren(...templates.map(templateCard));
  } catch (error) {
    showError(byId("templates-error"), error);
  }
}

showTemplates();
