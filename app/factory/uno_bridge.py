"""UNO bridge: a long-lived helper run by the *system* python (the one with Debian's python3-uno).

It connects to one warm ``soffice --accept=...`` listener and converts documents on request.
Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

    -> {"id": 1, "input": "/tmp/a.odt", "output": "/tmp/a.pdf", "filter": "writer_pdf_Export",
        "filterdata": {"PageRange": "2-3"}, "service": "com.sun.star.text.TextDocument"}
    <- {"id": 1, "ok": true, "pages": 5}  or  {"id": 1, "ok": false, "error": "..."}

On start it prints {"event": "ready", "version": "..."} once connected, or {"event": "error"} and exits.
It imports only the standard library and ``uno``: it never runs inside the convhub interpreter.

With ``--parent PID --office-group PGID`` it also outlives no factory: when its parent is no longer
PID (the factory was killed, even with SIGKILL, and the bridge was handed to init), it kills the
soffice process group PGID and exits. soffice runs in a session of its own (one killpg reaches
oosplash and soffice.bin), so nothing else would stop it. A thread watches, so a conversion in
progress does not delay it; PR_SET_PDEATHSIG would not do, since it fires when the *thread* that
started the process exits, and the factory starts instances from short-lived threads.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback

WATCH_INTERVAL = 0.5
ORPHAN_GRACE = 5.0


def _orphaned(parent):
    return parent is not None and os.getppid() != parent


def _kill_office_and_exit(group):
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    os._exit(3)


def _watch_parent(parent, group):
    """Until the parent is gone; then soffice is killed and the bridge exits."""

    def run():
        while not _orphaned(parent):
            time.sleep(WATCH_INTERVAL)
        _kill_office_and_exit(group)

    threading.Thread(target=run, name="watch-parent", daemon=True).start()


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _message(exc):
    msg = (getattr(exc, "Message", "") or str(exc)).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def _props(uno, **values):
    from com.sun.star.beans import PropertyValue  # (only importable after `import uno`)

    out = []
    for name, value in values.items():
        prop = PropertyValue()
        prop.Name = name
        prop.Value = value
        out.append(prop)
    return tuple(out)


def _connect(uno, connect, timeout):
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            ctx = resolver.resolve("uno:" + connect)
            smgr = ctx.ServiceManager
            desktop = smgr.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
            return ctx, desktop
        except Exception as exc:  # NoConnectException until soffice listens
            last = exc
            time.sleep(0.1)
    raise RuntimeError("could not connect to soffice: " + str(last))


def _product_version(uno, ctx):
    try:
        provider = ctx.ServiceManager.createInstanceWithContext(
            "com.sun.star.configuration.ConfigurationProvider", ctx
        )
        access = provider.createInstanceWithArguments(
            "com.sun.star.configuration.ConfigurationAccess",
            _props(uno, nodepath="/org.openoffice.Setup/Product"),
        )
        return access.getByName("ooSetupVersionAboutBox")
    except Exception:
        return ""


def _page_count(doc):
    """Pages of the loaded document as printed, or None when the type gives no cheap answer."""
    if doc.supportsService("com.sun.star.text.TextDocument"):
        return doc.getCurrentController().getPropertyValue("PageCount")
    if doc.supportsService("com.sun.star.presentation.PresentationDocument"):
        return doc.getDrawPages().getCount()
    return None


def _convert(uno, desktop, req):
    url_in = uno.systemPathToFileUrl(req["input"])
    url_out = uno.systemPathToFileUrl(req["output"])
    # Untrusted input: never run macros, never update links.
    load = _props(uno, Hidden=True, ReadOnly=True, MacroExecutionMode=0, UpdateDocMode=0)
    try:
        doc = desktop.loadComponentFromURL(url_in, "_blank", 0, load)
    except Exception as exc:
        # The document does not load (a crashed office is told apart by the caller: it is gone).
        return {"ok": False, "error": "LibreOffice could not load the document: " + _message(exc), "permanent": True}
    if doc is None:
        return {"ok": False, "error": "LibreOffice could not load the document", "permanent": True}
    try:
        service = req.get("service")
        if service and not doc.supportsService(service):
            return {"ok": False, "error": "document is not a " + service.rsplit(".", 1)[-1], "permanent": True}
        pages = _page_count(doc)
        store = {"FilterName": req["filter"], "Overwrite": True}
        data = req.get("filterdata") or {}
        if data:
            store["FilterData"] = uno.Any("[]com.sun.star.beans.PropertyValue", _props(uno, **data))
        try:
            doc.storeToURL(url_out, _props(uno, **store))
        except Exception as exc:
            return {"ok": False, "error": _message(exc), "pages": pages}
        return {"ok": True, "pages": pages}
    finally:
        try:
            doc.close(True)
        except Exception:
            doc.dispose()


def _serve(uno, desktop):
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            resp = _convert(uno, desktop, req)
        except Exception as exc:
            resp = {"ok": False, "error": _message(exc)}
            if req.get("debug"):
                resp["traceback"] = traceback.format_exc()
        resp["id"] = req.get("id")
        _reply(resp)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", required=True, help="UNO connection string after 'uno:'")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--parent", type=int, help="the factory's pid: when it is gone, kill --office-group")
    parser.add_argument("--office-group", type=int, help="soffice's process group id")
    args = parser.parse_args(argv)
    if args.parent is not None and args.office_group is not None:
        _watch_parent(args.parent, args.office_group)
    try:
        import uno  # (system python only)

        ctx, desktop = _connect(uno, args.connect, args.connect_timeout)
        _reply({"event": "ready", "version": _product_version(uno, ctx)})
    except Exception as exc:
        _reply({"event": "error", "error": str(exc).splitlines()[0] if str(exc) else repr(exc)})
        return 2
    try:
        _serve(uno, desktop)
    finally:
        # stdin closed (or a reply could not be written): by the factory stopping this instance
        # (it kills this bridge next and stops soffice itself, gracefully), or by the factory's
        # death: a dying process closes its files before its children are handed to init, so
        # wait a little for that to show before leaving.
        if args.office_group is not None:
            deadline = time.monotonic() + ORPHAN_GRACE
            while time.monotonic() < deadline:
                if _orphaned(args.parent):
                    _kill_office_and_exit(args.office_group)
                time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
