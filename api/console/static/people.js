// The people layer: a staff "one window" report form, the resident terminal, and the guards' patrol check-in.
"use strict";
const PEOPLE = {
  report: "/api/v1/reports",
  checkin: "/api/v1/patrols/checkins",
};

C.start(async (who) => {
  const page = document.body.dataset.page;
  if (page === "patrol") {
    const form = document.getElementById("patrol-form");
    const result = document.getElementById("patrol-result");
    const fromUrl = new URLSearchParams(location.search).get("cp");  // a QR code can carry the checkpoint
    if (fromUrl) form.querySelector("#p-checkpoint").value = fromUrl;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const checkpoint = document.getElementById("p-checkpoint").value.trim();
      const guard = document.getElementById("p-guard").value.trim();
      const r = await C.api(PEOPLE.checkin, {method: "POST", body: {checkpoint, guard, method: fromUrl ? "qr" : "other"}});
      C.notice(result, r.ok ? C.T("patrol.done", {checkpoint}) : r.status === 404 || r.status === 405
        ? C.T("common.not_available") : C.T("act.refused", {reason: r.error}), r.ok ? "ok" : "error");
      if (r.ok) document.getElementById("p-checkpoint").value = "";
    });
    document.getElementById("p-guard").value = who.username;
    return null;
  }
  const form = document.getElementById("report-form");
  const result = document.getElementById("report-result");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const [grid, building] = document.getElementById("r-place").value.split("/");
    const body = {category: document.getElementById("r-category").value, grid, building,
                  text: document.getElementById("r-text").value};
    const photo = document.getElementById("r-photo").files[0];
    if (photo) {
      // The API takes the optional JPEG as base64 inside the JSON body.
      const bytes = new Uint8Array(await photo.arrayBuffer());
      let bin = "";
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      body.photo_jpeg_b64 = btoa(bin);
    }
    const r = await C.api(PEOPLE.report, {method: "POST", body});
    const id = r.ok ? r.data.report_id : "";
    C.notice(result, r.ok ? C.T(page === "terminal" ? "terminal.thanks" : "report.created", {id})
      : r.status === 404 || r.status === 405 ? C.T("common.not_available") : C.T("act.refused", {reason: r.error}),
             r.ok ? "ok" : "error");
    if (r.ok) {
      result.dataset.alert = String(r.data.alert_id);  // the ticket the report opened
      form.reset();
    }
  });
  return who;
});
