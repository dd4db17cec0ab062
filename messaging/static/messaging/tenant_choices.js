// Foreign-key choices narrowed to the owner picked in the same form: a <select data-narrow-by="tenant"> shows only
// the options whose data-tenant lists the chosen tenant (data-narrow-by="reseller": data-reseller, and so on).
// Only a help to the eye: the server refuses another tenant's row whatever the browser sends.
(function () {
  function narrow(select) {
    const by = select.dataset.narrowBy;
    const owner = select.form && select.form.elements.namedItem(by);
    if (!owner || owner.tagName !== "SELECT") return;  // the owner is fixed on this page: the server narrowed already
    function update() {
      const chosen = owner.value;
      for (const option of select.options) {
        const owners = option.dataset[by];
        if (owners === undefined) continue;  // the empty choice
        const shown = !chosen || owners.split(" ").includes(chosen);
        option.hidden = !shown;
        option.disabled = !shown;
        if (!shown && option.selected) select.value = "";
      }
    }
    owner.addEventListener("change", update);
    update();
  }
  function start() {
    document.querySelectorAll("select[data-narrow-by]").forEach(narrow);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
