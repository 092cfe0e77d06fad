"""The process-kill soak: convhub's real processes under load while a killer `kill -9`s them in turn.

One run, on one configuration (a database URL and a broker URL):

1. Split stage: `convhub web` (the "master"; its child processes are the "workers"), two Celery
   workers, beat, and 8 stub factories (tests/soak/factory_stub.py) looping poll -> convert -> finish.
   A submitter uploads and converts N distinct documents over SOAP, paced over the run, each call
   with a requestId so a call whose answer was lost is retried safely. The killer runs its cycle:
   a web worker mid-poll, a web worker mid-finish of a large result, the web master, a Celery
   worker, beat, a factory mid-conversion; it restarts what a service manager would restart.
2. All-in-one stage: every split process is SIGKILLed at once; `convhub serve` starts on the same
   data; the killer SIGKILLs serve's whole process group and starts serve again, repeatedly.
3. No more kills: every job must end COMPLETE; then the checks (see `Soak.check`).

Leases are short so that killed work comes back quickly. The summary goes to stdout and to
tests/artifacts/soak-kill-<config>.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from app.db.models import Job, Result
from app.domain.states import JobState
from tests.conftest import add_client, add_factory, free_port, wait_for
from tests.soak.factory_stub import document, result_for
from tests.topokit import (
    CONVHUB,
    ROOT,
    Procs,
    descendants,
    envelope,
    local,
    process_env,
    serving_process,
    soap_call,
    soap_response,
)

FACTORIES = 8
CELERY_WORKERS = 2
WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"
CLIENT, CLIENT_SECRET = "soakclient", "soak-client-secret-5f1c9e"
LARGE = 1024 * 1024  # a finish this large is worth killing a web worker in the middle of
ARTIFACTS = ROOT / "tests" / "artifacts"

SPLIT_KINDS = ("web-worker-poll", "web-worker-finish", "web-master", "celery-worker", "beat", "factory")
# No factory kill here: a factory killed just before serve's group makes the next holder of its job
# lose its finish to the outage, and two expired leases quarantine the document (see Soak.check).
SERVE_KINDS = ("serve-group",)


SUBMITTERS = 8  # SOAP submitter threads (upload + convert per job, paced over submit_seconds)


@dataclass(frozen=True)
class SoakConfig:
    name: str
    db_url: str
    broker_url: str
    jobs: int
    cycles: int  # kill cycles in the split stage (each runs every SPLIT_KINDS once)
    serve_kills: int  # kills of serve's process group in the all-in-one stage
    submit_seconds: float  # the submitter spreads the N jobs over this long
    large_every: int = 25  # every n-th job's result is 2-5 MiB
    lease_seconds: int = 10
    gap_seconds: float = 1.0  # pause between two kills

    def result_size(self, i: int) -> int:
        if i % self.large_every == self.large_every - 1:
            return 2 * 1024 * 1024 + (i * 7919) % (3 * 1024 * 1024)
        return 512 + (i * 37) % 4096


@dataclass
class Tally:
    kills: Counter[str] = field(default_factory=Counter)
    aimed: Counter[str] = field(default_factory=Counter)  # kills timed on the factory's marker
    restarts: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def kill(self, kind: str, aimed: bool) -> None:
        self.kills[kind] += 1
        if aimed:
            self.aimed[kind] += 1
        self.timeline.append((time.time(), kind))


class FactoryWatch:
    """The last event of each factory, read incrementally from the event files."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.offsets = dict.fromkeys(paths, 0)
        self.last: dict[str, dict[str, Any]] = {}

    def refresh(self) -> dict[str, dict[str, Any]]:
        for label, path in self.paths.items():
            try:
                with path.open("rb") as fh:
                    fh.seek(self.offsets[label])
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.offsets[label] += end + 1
            for line in data[: end + 1].splitlines()[::-1]:
                try:
                    self.last[label] = json.loads(line)
                    break
                except ValueError:
                    continue
        return self.last


class Soak:
    def __init__(self, tmp: Path, rt: Any, cfg: SoakConfig) -> None:
        self.tmp, self.rt, self.cfg = tmp, rt, cfg
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data = tmp / "var"
        self.factory_secrets = {f"soak-{i}": f"soak-factory-secret-{i}-{os.urandom(4).hex()}" for i in range(1, FACTORIES + 1)}
        env = process_env(
            self.data, cfg.db_url, cfg.broker_url, self.base,
            CONVHUB_LEASE_SECONDS=str(cfg.lease_seconds),
            CONVHUB_RECLAIM_INTERVAL_SECONDS="2",
            CONVHUB_RECONCILE_INTERVAL_SECONDS="5",
            CONVHUB_AUTH_CACHE_SECONDS="30",
        )
        self.procs = Procs(tmp, env)
        self.events = {f"factory-{i}": tmp / f"factory-{i}.events" for i in range(1, FACTORIES + 1)}
        self.watch = FactoryWatch(self.events)
        self.tally = Tally()
        self.stop_file = tmp / "stop"
        self.docs = [document(cfg.name, i, cfg.result_size(i)) for i in range(cfg.jobs)]
        self.job_ids: dict[int, int] = {}
        self.submit_retries = 0
        self.submit_errors: list[str] = []
        self.submitted = threading.Event()
        self.rng = random.Random(cfg.name)

    # -------------------------------------------------------------- processes

    def setup(self) -> None:
        add_client(self.rt, CLIENT, CLIENT_SECRET)
        for name, secret in self.factory_secrets.items():
            add_factory(self.rt, name=name, secret=secret, workers=(WRITER,))
            (self.tmp / f"{name}.secret").write_text(secret)
        self.rt.mirror.declare([("LibreOffice Writer", "7.4")])

    def _web_argv(self) -> list[str]:
        return CONVHUB + ["web", "--port", str(self.port), "--workers", "2", "--threads", "8"]

    def start_split(self) -> None:
        self.procs.start("web", self._web_argv())
        for i in range(CELERY_WORKERS):
            self.procs.start(f"worker-{i}", CONVHUB + ["worker", "--pool", "threads", "--concurrency", "2", "--hostname", f"soak-w{i}@%h"])
        self.procs.start("beat", CONVHUB + ["beat"])
        self.wait_web()

    def kill_split(self) -> None:
        """The end of the split stage: every server process SIGKILLed at once (a host losing power
        under them); `convhub serve` then starts on the same data."""
        labels = ["web", "beat", *(f"worker-{i}" for i in range(CELERY_WORKERS))]
        for label in labels:
            try:
                os.killpg(self.procs.procs[label].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.tally.kill("all-split", aimed=False)
        for label in labels:
            self.procs.reap(label)
            del self.procs.procs[label]

    def start_serve(self) -> None:
        self.procs.start("serve", CONVHUB + ["serve", "--port", str(self.port), "--factory", "off"])
        self.wait_web()

    def start_factories(self) -> None:
        for i in range(1, FACTORIES + 1):
            self.procs.start(
                f"factory-{i}",
                [*CONVHUB[:1], "-m", "tests.soak.factory_stub", self.base, f"soak-{i}",
                 str(self.tmp / f"soak-{i}.secret"), str(self.stop_file), str(self.events[f"factory-{i}"])],
                optional=True,
            )

    def wait_web(self) -> None:
        def up() -> bool:
            self.procs.check_alive()
            return requests.get(self.base + "/healthz", timeout=2).ok

        wait_for(up, 60, "the web server to answer", interval=0.1, ignore=(requests.RequestException,),
                 details=lambda: self.procs.tail("serve" if "serve" in self.procs.procs else "web"))

    # -------------------------------------------------------------- submitter

    def _submit_call(self, session: requests.Session, op: str, deadline: float, **fields: str) -> Any:
        body = envelope(CLIENT, CLIENT_SECRET, op, **fields)
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = soap_call(session, self.base, body, timeout=60)
                if resp.status_code == 200:
                    status, out = soap_response(op, resp.content)
                    if status == "200":
                        return out
                    last = f"status {status}"
                    if status not in ("503", "599"):
                        break
                else:
                    last = f"HTTP {resp.status_code}"
            except (requests.RequestException, ValueError) as exc:
                last = type(exc).__name__
            self.submit_retries += 1
            time.sleep(0.3)
        raise RuntimeError(f"{op} {fields.get('requestId')}: {last}")

    def submitter(self) -> None:
        t0 = time.monotonic()
        step = self.cfg.submit_seconds / max(1, self.cfg.jobs)
        lock = threading.Lock()
        todo = iter(range(self.cfg.jobs))

        def run() -> None:
            with requests.Session() as s:
                while True:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    wait = t0 + i * step - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    deadline = time.monotonic() + 120
                    try:
                        up = self._submit_call(s, "contentUpload", deadline, content=base64.b64encode(self.docs[i]).decode(),
                                               filename=f"soak-{i}.odt", requestId=f"{self.cfg.name}-u{i}")
                        ident = local(up, "contentIdentifier")[0].text or ""
                        out = self._submit_call(s, "contentConvert", deadline, contentIdentifier=ident,
                                                application="LibreOffice Writer", version="7.4", format="pdf",
                                                noCache="true", requestId=f"{self.cfg.name}-c{i}")
                        self.job_ids[i] = int(local(out, "jobId")[0].text or "0")
                    except Exception as exc:  # recorded: a submit that never succeeded is a failure
                        self.submit_errors.append(str(exc)[:300])

        # Kills make calls wait and retry, so the full form's 5,000 jobs take longer than the 150 s
        # pace whatever the thread count (3 threads: ~260 s; 8: ~225 s, with more retries).
        threads = [threading.Thread(target=run, daemon=True) for _ in range(SUBMITTERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.submitted.set()

    # -------------------------------------------------------------- killer

    def _wait_marker(self, pred: Any, timeout: float) -> str | None:
        """A factory whose last event satisfies `pred`, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [lb for lb, ev in self.watch.refresh().items() if pred(ev)]
            if hits:
                return self.rng.choice(sorted(hits))
            time.sleep(0.005)
        return None

    def _kill_web_worker(self, kind: str, pred: Any) -> None:
        master = self.procs.procs["web"].pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            label = self._wait_marker(pred, max(0.0, deadline - time.monotonic()))
            workers = descendants(master)
            if label is None or not workers:
                break
            pid = serving_process(self.procs.procs[label].pid, workers, self.port)
            if pid is not None and _kill(pid):
                self.tally.kill(kind, aimed=True)
                return
        workers = descendants(master)
        if workers and _kill(self.rng.choice(workers)):
            self.tally.kill(kind, aimed=False)

    def _restart_group(self, label: str) -> None:
        """What a service manager does when a unit's main process dies: kill what is left of its
        group, start it again."""
        p = self.procs.procs[label]
        self.procs.reap(label)
        try:  # its children (a web master's workers) were re-parented: found by their group
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs.restart(label)
        self.tally.restarts[label.split("-")[0]] += 1

    def kill_one(self, kind: str) -> None:
        procs = self.procs.procs
        if kind == "web-worker-poll":
            self._kill_web_worker(kind, lambda ev: ev.get("ev") == "poll")
        elif kind == "web-worker-finish":
            self._kill_web_worker(kind, lambda ev: ev.get("ev") == "finishing" and ev.get("size", 0) >= LARGE)
        elif kind == "web-master":
            aimed = self._wait_marker(lambda ev: ev.get("ev") in ("poll", "finishing"), 5) is not None
            _kill(procs["web"].pid)
            self.tally.kill(kind, aimed)
            self._restart_group("web")
            self.wait_web()
        elif kind == "celery-worker":
            label = self.rng.choice([lb for lb in procs if lb.startswith("worker-")])
            _kill(procs[label].pid)
            self.tally.kill(kind, aimed=False)
            self._restart_group(label)
        elif kind == "beat":
            _kill(procs["beat"].pid)
            self.tally.kill(kind, aimed=False)
            self._restart_group("beat")
        elif kind == "factory":
            # A job whose lease expired once already is left alone: two expired leases on two
            # factories quarantine its document (SPEC, farm policy), which the soak cannot tell
            # from a lost job. (A web kill can still expire a lease: see Soak.check.)
            label = self._wait_marker(lambda ev: ev.get("ev") == "converting" and ev.get("attempt") == 1, 10)
            aimed = label is not None
            label = label or self.rng.choice(sorted(self.events))
            _kill(procs[label].pid)
            self.tally.kill(kind, aimed)
            self.procs.reap(label)
            self.procs.restart(label)
            self.tally.restarts["factory"] += 1
        elif kind == "serve-group":
            aimed = self._wait_marker(lambda ev: ev.get("ev") == "finishing" and ev.get("size", 0) >= LARGE, 10) is not None
            try:
                os.killpg(procs["serve"].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.tally.kill(kind, aimed)
            self.procs.reap("serve")
            self.procs.restart("serve")
            self.tally.restarts["serve"] += 1
            self.wait_web()
        else:
            raise ValueError(kind)

    # -------------------------------------------------------------- the run

    def complete(self) -> int:
        with self.rt.db.read_session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(Job.state == int(JobState.COMPLETE))) or 0

    def settled(self) -> int:
        """Jobs in a final state (COMPLETE, or FAILED by a quarantine that Soak.check accounts for)."""
        final = [int(JobState.COMPLETE), int(JobState.FAILED)]
        with self.rt.db.read_session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(Job.state.in_(final))) or 0

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.monotonic()
        marks: dict[str, float] = {}
        wall0 = time.time()
        self.setup()
        try:
            self.start_split()
            self.start_factories()
            sub = threading.Thread(target=self.submitter, daemon=True)
            sub.start()
            marks["started"] = time.monotonic() - t0
            for _ in range(cfg.cycles):
                for kind in SPLIT_KINDS:
                    self.kill_one(kind)
                    time.sleep(cfg.gap_seconds)
            marks["split_kills"] = time.monotonic() - t0
            self.kill_split()
            self.start_serve()
            marks["serve_started"] = time.monotonic() - t0
            for _ in range(cfg.serve_kills):
                for kind in SERVE_KINDS:
                    time.sleep(cfg.gap_seconds)
                    self.kill_one(kind)
            marks["serve_kills"] = time.monotonic() - t0
            sub.join(timeout=cfg.submit_seconds + 300)
            marks["submitted"] = time.monotonic() - t0
            submitted = len(self.job_ids)

            def done() -> bool:
                self.procs.check_alive()
                return self.settled() >= submitted

            wait_for(done, 120 + submitted / 20, f"{submitted} jobs COMPLETE or FAILED", interval=0.5,
                     details=lambda: f"{self.complete()} COMPLETE\n{self.procs.tail('serve')}")
            marks["all_complete"] = time.monotonic() - t0
            self.stop_file.write_text("stop")
            for label in self.events:
                p = self.procs.procs[label]
                try:
                    p.wait(timeout=30)
                except Exception:
                    p.kill()
            marks["factories_stopped"] = time.monotonic() - t0
            results = self.fetch_results()
            marks["results_fetched"] = time.monotonic() - t0
        finally:
            self.procs.stop()
        summary = self.check(results)
        marks["checked"] = time.monotonic() - t0
        summary["seconds"] = {k: round(v, 1) for k, v in marks.items()}
        summary["kill_times"] = [(round(t - wall0, 1), kind) for t, kind in self.tally.timeline]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"soak-kill-{cfg.name}.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary

    def fetch_results(self) -> dict[int, str]:
        """sha256 of every job's result, fetched over SOAP (getContentConvertResult)."""
        out: dict[int, str] = {}
        lock = threading.Lock()
        items = iter(sorted(self.job_ids.items()))

        def run() -> None:
            with requests.Session() as s:
                while True:
                    with lock:
                        item = next(items, None)
                    if item is None:
                        return
                    i, job_id = item
                    body = envelope(CLIENT, CLIENT_SECRET, "getContentConvertResult", jobId=str(job_id))
                    resp = soap_call(s, self.base, body, timeout=120)
                    if resp.status_code != 200:
                        continue
                    status, res = soap_response("getContentConvertResult", resp.content)
                    if status != "200":
                        continue
                    h = hashlib.sha256()
                    for c in local(res, "content"):
                        h.update(base64.b64decode(c.text or ""))
                    out[i] = h.hexdigest()

        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    # -------------------------------------------------------------- checks

    def factory_events(self) -> tuple[list[dict[str, Any]], int]:
        events, torn = [], 0
        for label, path in self.events.items():
            for line in path.read_bytes().splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:  # a line cut short by a kill
                    torn += 1
                    continue
                ev["factory"] = label
                events.append(ev)
        return events, torn

    def check(self, results: dict[int, str]) -> dict[str, Any]:
        cfg = self.cfg
        events, torn = self.factory_events()
        evidence = lease_evidence(events)
        handouts, accepted = evidence.handouts, evidence.accepted
        stale, overlaps, after_complete, unconfirmed = evidence.stale, evidence.overlaps, evidence.after_complete, evidence.unconfirmed
        multi_finish = evidence.multi_finish

        with self.rt.db.read_session() as s:
            states = {JobState(k).name: v for k, v in s.execute(select(Job.state, func.count()).group_by(Job.state)).all()}
            guids = dict(s.execute(select(Job.id, Job.guid)).all())
            extra_results = s.scalar(
                select(func.count()).select_from(
                    select(Result.job_id).group_by(Result.job_id).having(func.count() > 1).subquery()
                )
            ) or 0
            attempts = Counter(a for (a,) in s.execute(select(Job.attempts)).all())
            total_jobs = s.scalar(select(func.count()).select_from(Job)) or 0
        with self.rt.db.read_session() as s:
            complete_guids = {g for (g,) in s.execute(select(Job.guid).where(Job.state == int(JobState.COMPLETE))).all()}
            quarantined = dict(
                s.execute(
                    select(Job.guid, Job.attempts).where(
                        Job.state == int(JobState.FAILED), Job.failure_reason.like("quarantined:%")
                    )
                ).all()
            )
        # SPEC (farm policy): a document whose leases expired on two factories is quarantined, its
        # job FAILED. In this soak a lease expires only through a kill (a live factory converts in
        # milliseconds): its holder was killed, or its finish or its poll's answer was lost to a
        # killed web server that stayed down longer than the lease. Such a job is counted apart, not
        # as lost, when nothing contradicts it: two or more attempts, no finish accepted for any.
        by_kills = {g for g, attempts in quarantined.items() if attempts >= 2 and not accepted.get(g)}
        submitted = set(self.job_ids)
        lost = [i for i in submitted if guids.get(self.job_ids[i]) not in complete_guids | by_kills]
        wrong = [i for i in submitted if guids.get(self.job_ids[i]) in complete_guids
                 and results.get(i) != hashlib.sha256(result_for(self.docs[i])).hexdigest()]
        unconfirmed_complete = [j for j in unconfirmed if j in complete_guids]
        # A completed job with no accepted finish in any factory's log: the accepting answer was lost
        # (killed mid-finish); its last hand-out's holder must at least have sent a finish.
        finishing = {(ev["job"], ev["lease"]) for ev in events if ev["ev"] == "finishing"}
        unexplained = [j for j in unconfirmed_complete if (j, handouts[j][-1]["lease"]) not in finishing]
        tracebacks, leaks = {}, {}
        secrets = [CLIENT_SECRET, *self.factory_secrets.values()]
        for path in [*self.procs.logs(), *self.events.values()]:
            text = path.read_text(errors="replace")
            if "Traceback" in text:
                tracebacks[path.name] = text.count("Traceback")
            found = [s for s in secrets if s in text]
            if found:
                leaks[path.name] = len(found)
        kinds = Counter(ev["ev"] for ev in events)
        summary: dict[str, Any] = {
            "config": cfg.name,
            "jobs": cfg.jobs,
            "submitted": len(submitted),
            "jobs_in_db": total_jobs,
            "submit_errors": self.submit_errors[:5],
            "submit_retries": self.submit_retries,
            "states": states,
            "attempts": {str(k): v for k, v in sorted(attempts.items())},
            "kills": dict(self.tally.kills),
            "kills_aimed": dict(self.tally.aimed),
            "restarts": dict(self.tally.restarts),
            "lost": len(lost),
            "quarantined_by_kills": len(by_kills),
            "duplicated": len(multi_finish) + extra_results + len(after_complete) + max(0, total_jobs - len(submitted)),
            "stale": len(stale) + len(unexplained),
            "overlapping_leases": len(overlaps),
            "wrong_results": len(wrong),
            "tracebacks": sum(tracebacks.values()),
            "traceback_logs": tracebacks,
            "secret_leaks": leaks,
            "handouts": kinds["handout"],
            "accepted_finishes": kinds["finished"],
            "refused_finishes": kinds["finish_fault"],
            "lost_answers": {"poll": kinds["poll_error"], "finish": kinds["finish_error"]},
            "finishes_unconfirmed": len(unconfirmed_complete),
            "torn_event_lines": torn,
            "examples": {"lost": lost[:5], "stale": stale[:3], "overlaps": overlaps[:3], "wrong": wrong[:5],
                         "after_complete": after_complete[:3], "unexplained": unexplained[:3]},
        }
        print(
            f"\nsoak-kill {cfg.name}: jobs={len(submitted)}/{cfg.jobs} kills={sum(self.tally.kills.values())} "
            f"{dict(self.tally.kills)} restarts={dict(self.tally.restarts)} lost={summary['lost']} "
            f"quarantined_by_kills={len(by_kills)} duplicated={summary['duplicated']} stale={summary['stale']} overlaps={summary['overlapping_leases']} "
            f"wrong={summary['wrong_results']} tracebacks={summary['tracebacks']} leaks={len(leaks)}"
        )
        return summary


@dataclass
class Evidence:
    """What the factories' event logs prove about leases (see `lease_evidence`)."""

    handouts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    accepted: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    stale: list[tuple[str, str, str]] = field(default_factory=list)  # (job, accepted lease, live lease)
    overlaps: list[tuple[str, str, str]] = field(default_factory=list)  # (job, earlier lease, later lease)
    after_complete: list[tuple[str, str]] = field(default_factory=list)  # (job, lease handed out after its finish)
    unconfirmed: list[str] = field(default_factory=list)  # jobs without an accepted finish in any log
    multi_finish: list[str] = field(default_factory=list)  # jobs finished under two leases


def lease_evidence(events: list[dict[str, Any]]) -> Evidence:
    """Check the lease rules on the factories' events ("handout" with job, lease, exp (the lease's
    expiry, an XML-RPC dateTime) and t0/t (poll sent/answered); "finished" with job, lease, t).

    - A finish is accepted only for the job's live lease: its lease is the last one handed out
      (in grant order), and nothing is handed out after it was accepted.
    - No two live leases: a hand-out's answer never arrives before the previous lease of the same
      job expired, unless that lease ended by an accepted finish (then it is `after_complete`).
    Each rule can only be broken by the server (every time compared is bounded the safe way)."""
    out = Evidence()
    for ev in events:
        if ev["ev"] == "handout":
            out.handouts[ev["job"]].append(ev)
        elif ev["ev"] == "finished":
            out.accepted[ev["job"]].append(ev)
    for job, hs in out.handouts.items():
        # In the order the server granted them: a grant comes after the previous lease's expiry,
        # so expiries (whole seconds) are at least a lease apart; arrival order could differ.
        hs.sort(key=lambda h: (_expiry(h["exp"]), h["t"]))
        fin = out.accepted.get(job, [])
        for f in fin:
            if f["lease"] != hs[-1]["lease"]:
                out.stale.append((job, f["lease"], hs[-1]["lease"]))
            for h in hs:
                if h["t0"] > f["t"]:  # the poll was sent after the finish was answered
                    out.after_complete.append((job, h["lease"]))
        if not fin:
            out.unconfirmed.append(job)
        for a, b in zip(hs, hs[1:], strict=False):
            if any(f["lease"] == a["lease"] for f in fin):
                continue
            # b was granted before its answer arrived; a's true expiry is at or after the whole second.
            if b["t"] < _expiry(a["exp"]):
                out.overlaps.append((job, a["lease"], b["lease"]))
    out.multi_finish = [job for job, fs in out.accepted.items() if len({f["lease"] for f in fs}) > 1]
    return out


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def _expiry(value: str) -> float:
    """An XML-RPC dateTime (UTC, whole seconds) as a Unix time."""
    for fmt in ("%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value[:19] if "-" in value else value[:17], fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(f"not a dateTime: {value!r}")
