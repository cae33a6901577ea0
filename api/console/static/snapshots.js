// Snapshot thumbnails of an alert's events, fetched behind the token; the API decides blurred or not by role.
"use strict";
const Snapshots = {
  async show(target, events, who) {
    const withSnap = events.filter((e) => e.snapshot);
    target.replaceChildren();
    if (!withSnap.length) return target.append(C.el("p", {class: "muted-text"}, C.T("common.none")));
    for (const e of withSnap) {
      const r = await C.blobUrl(`/api/v1/snapshots/${encodeURIComponent(e.device_id)}/${encodeURIComponent(e.snapshot)}`);
      if (!r.url) {
        target.append(C.el("p", {class: "muted-text"}, C.T("common.error", {reason: "HTTP " + r.status})));
        continue;
      }
      const header = r.headers.get("x-commhub-blurred");
      const blurred = header !== null ? header !== "false" && header !== "0" : !who.sees_unblurred;
      const caption = C.T(blurred ? "detail.blurred" : "detail.unblurred");
      target.append(C.el("figure", {"data-snapshot": e.snapshot, "data-blurred": blurred ? "true" : "false"},
        C.el("img", {src: r.url, alt: `${C.label("kind", e.type)} ${C.fmtTime(e.ts)} — ${caption}`}),
        C.el("figcaption", {}, `${C.fmtTime(e.ts)} · ${caption}`)));
    }
  },
};
