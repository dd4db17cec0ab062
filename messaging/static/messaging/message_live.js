/* A message's page keeps its status current without a reload: it asks the message's status.json (MessageAdmin.
   status_view, scoped like the page) and swaps in each field marked data-live, until the status is final. The wait
   between asks grows from 2 to 30 seconds: a text can wait hours for its delivery report. */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  const progress = document.querySelector('[data-live="progress"][data-status-url]');
  if (!progress || progress.dataset.final === "1") return;
  const url = progress.dataset.statusUrl;
  let wait = 2000;

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      // Signed out (the admin redirects to its login page), or the message is no longer ours to see: stop.
      if (response.redirected || response.status === 403 || response.status === 404) return;
      if (response.ok) {
        const answer = await response.json();
        for (const [name, html] of Object.entries(answer.fields)) {
          const field = document.querySelector('[data-live="' + name + '"]');
          if (field && field.outerHTML !== html) field.outerHTML = html;
        }
        if (answer.final) return;
      }
    } catch (error) {
      /* offline for a moment, or the server restarting: the next ask tries again */
    }
    wait = Math.min(wait * 1.5, 30000);
    setTimeout(poll, wait);
  }
  setTimeout(poll, wait);
});
