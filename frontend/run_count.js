// The number of runs a draft design makes, shown beside the designer's submit button and
// read from POST /api/studies/run-count, which reads the design's sweep alone.

import { postJson } from "/static/api.js";

// Typing in a sweep value fires many input events; the count is asked for once they pause.
const RUN_COUNT_DELAY_MS = 300;

/**
 * Keep `element` showing how many runs the design from `readDesign()` makes, and whether
 * that is above the limit per study, as the form changes.
 */
export function watchRunCount(form, readDesign, element) {
  let timer = null;
  let request = 0;

  async function update() {
    request += 1;
    const current = request;
    let body;
    try {
      body = await postJson("/api/studies/run-count", { sweep: readDesign().sweep ?? [] });
    } catch (error) {
      // The sweep itself is invalid; the submit shows the error next to its field.
      if (current === request) {
        element.textContent = "";
      }
      return;
    }
    if (current !== request) {
      return;
    }
    const runs = body.runs === 1 ? "1 run" : `${body.runs} runs`;
    element.dataset.runs = String(body.runs);
    element.dataset.withinLimit = String(body.within_limit);
    element.textContent = body.within_limit
      ? `This design makes ${runs}.`
      : `This design makes ${runs}, more than the ${body.max_runs} a study may have.`;
  }

  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(update, RUN_COUNT_DELAY_MS);
  };
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  form.addEventListener("click", schedule);
  return update();
}
