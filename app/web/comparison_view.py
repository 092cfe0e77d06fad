"""The rendering comparison pages of /ops (app.services.comparison).

`register(bp, rt)` adds, behind the ops page's operator authentication:
- `GET /ops/comparisons/<id>[?reference=<jobId>]`: the renderings' pages side by side as thumbnails,
  each with its score against the reference; a click shows the page's difference image.
- `GET /ops/comparisons/<id>/pages/<jobId>/<page>.png` and `.../diff/<jobA>/<jobB>/<page>.png`: the
  images the comparison task stored. Nothing is rendered here: a page view only reads stored bytes.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from app.domain.errors import BadArgument, NotFound
from app.services import comparison
from app.services.runtime import Runtime

IMAGE_MAX_AGE = 3600  # stored images never change once written
# Ids the database can hold (a BIGINT): a larger one in a path matches no route (404), rather than
# overflowing the driver's integer (found by the /ops fuzzing).
_ID = "int(max=9223372036854775807)"


def register(bp: Blueprint, rt: Runtime) -> None:
    @bp.get(f"/ops/comparisons/<{_ID}:comparison_id>")
    def comparison_page(comparison_id: int):  # type: ignore[no-untyped-def]
        raw = request.args.get("reference", "").strip()
        reference = int(raw) if raw.isdigit() and len(raw) <= 18 else None
        try:
            with rt.db.read_session() as s:
                view = comparison.view(s, comparison_id, reference_job_id=reference)
        except (NotFound, BadArgument) as exc:
            return render_template("ops/comparison.html", view=None, comparison_id=comparison_id, message=str(exc)), 404
        pages = max((len(r.pages) for r in view.renderings), default=0)
        return render_template("ops/comparison.html", view=view, comparison_id=comparison_id, pages=range(1, pages + 1), message=None)

    @bp.get(f"/ops/comparisons/<{_ID}:comparison_id>/pages/<{_ID}:job_id>/<{_ID}:page>.png")
    def comparison_page_image(comparison_id: int, job_id: int, page: int):  # type: ignore[no-untyped-def]
        return _image(lambda s: comparison.page_png(s, comparison_id, job_id, page))

    @bp.get(f"/ops/comparisons/<{_ID}:comparison_id>/diff/<{_ID}:job_a>/<{_ID}:job_b>/<{_ID}:page>.png")
    def comparison_diff_image(comparison_id: int, job_a: int, job_b: int, page: int):  # type: ignore[no-untyped-def]
        return _image(lambda s: comparison.diff_png(s, comparison_id, job_a, job_b, page))

    def _image(read):  # type: ignore[no-untyped-def]
        try:
            with rt.db.read_session() as s:
                data = read(s)
        except NotFound:
            return Response("No such image.\n", status=404, mimetype="text/plain")
        resp = Response(data, mimetype="image/png")
        resp.headers["Cache-Control"] = f"private, max-age={IMAGE_MAX_AGE}"
        return resp
