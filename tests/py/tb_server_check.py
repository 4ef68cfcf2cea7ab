#!/usr/bin/env python3
"""Start a real TensorBoard server on a folder and check what its HTTP API shows.

Usage: tb_server_check.py LOGDIR [--expect-run NAME]... [--expect-tags a,b]
                         [--hparams] [--timeout SECONDS]

The folder is also read directly (read_events.py, TensorBoard's own reader);
the server, on 127.0.0.1 and a free port with --load_fast=false, must list
  * every run found there that holds scalars, with all of its scalar tags;
  * every run that holds histograms, with each histogram's steps and bucket
    counts in the HISTOGRAMS tab and its steps in the DISTRIBUTIONS tab;
  * every run that holds a graph, in the GRAPHS tab with every node;
  * each --expect-run (a run name as TensorBoard shows it, e.g.
    "trial-0/validation"), with every tag of --expect-tags;
  * with --hparams: the experiment's hparams and metrics (those of its
    summary, or, with none in the folder, those TensorBoard infers from the
    sessions), and every session (run with a session_start_info) with its
    hparam values, its status and, for each experiment metric its run has
    on disk, the last value logged.
Exits 0 when all hold, 1 with the reason otherwise; the server is always
stopped. Prints one line per check.
"""

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import read_events  # noqa: E402

ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


class CheckFailed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, logdir):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
             "--host", "127.0.0.1", "--port", str(self.port), "--load_fast=false",
             "--reload_interval", "1"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def get(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def wait_up(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckFailed("tensorboard exited with %s" % self.proc.returncode)
            try:
                return self.get("/data/runs")
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise CheckFailed("tensorboard did not answer on %s in time" % self.base)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def poll(deadline, fetch, missing):
    """Fetch until `missing(answer)` is empty or the deadline passes."""
    while True:
        try:
            answer = fetch()
            gaps = missing(answer)
        except urllib.error.HTTPError as e:
            answer, gaps = None, ["HTTP %d: %s" % (e.code, e.read()[:500].decode(errors="replace"))]
        if not gaps or time.monotonic() > deadline:
            return answer, gaps
        time.sleep(0.3)


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def same_value(a, b):
    if isinstance(a, (int, float)) and not isinstance(a, bool) and \
       isinstance(b, (int, float)) and not isinstance(b, bool):
        return close(float(a), float(b))
    return a == b


def check_scalars(server, disk, expect_runs, expect_tags, deadline):
    want = {run: set(data["scalars"]) for run, data in disk["runs"].items() if data["scalars"]}
    for run in expect_runs:
        if run not in disk["runs"]:
            raise CheckFailed("expected run %r is not in the folder (runs: %s)"
                              % (run, sorted(disk["runs"])))
    if not want:
        raise CheckFailed("the folder holds no scalars")

    def missing(tags):
        return ["%s: %s" % (run, sorted(t - set(tags.get(run, {}))))
                for run, t in want.items() if not t <= set(tags.get(run, {}))]

    tags, gaps = poll(deadline, lambda: server.get("/data/plugin/scalars/tags"), missing)
    if gaps:
        raise CheckFailed("server lacks scalar runs/tags: %s" % "; ".join(gaps))
    for run in expect_runs:
        lacking = [t for t in expect_tags if t not in tags.get(run, {})]
        if lacking:
            raise CheckFailed("run %r lacks tags %s (has %s)"
                              % (run, lacking, sorted(tags.get(run, {}))))
    print("ok scalars: %d runs listed with their tags: %s"
          % (len(want), ", ".join("%s [%s]" % (r, ",".join(sorted(t)))
                                  for r, t in sorted(want.items()))))


def check_histograms(server, disk, deadline):
    want = {run: data["histograms"] for run, data in disk["runs"].items() if data["histograms"]}
    if not want:
        return

    def missing(tags):
        return ["%s: %s" % (run, sorted(set(h) - set(tags.get(run, {}))))
                for run, h in want.items() if not set(h) <= set(tags.get(run, {}))]

    _, gaps = poll(deadline, lambda: server.get("/data/plugin/histograms/tags"), missing)
    if gaps:
        raise CheckFailed("server lacks histogram runs/tags: %s" % "; ".join(gaps))
    n = 0
    for run, histograms in sorted(want.items()):
        for tag, events in sorted(histograms.items()):
            query = urllib.parse.urlencode({"run": run, "tag": tag})
            wanted = [(e["step"], [b[2] for b in e["buckets"]]) for e in events]
            got, gaps = poll(
                deadline,
                lambda: [(step, [b[2] for b in buckets]) for _, step, buckets
                         in server.get("/data/plugin/histograms/histograms?" + query)],
                lambda got: [] if got == wanted else ["differs"])
            if gaps:
                raise CheckFailed("histogram %s/%s: server %r, file %r" % (run, tag, got, wanted))
            steps = [e["step"] for e in events]
            got, gaps = poll(
                deadline,
                lambda: [step for _, step, _
                         in server.get("/data/plugin/distributions/distributions?" + query)],
                lambda got: [] if got == steps else ["differs"])
            if gaps:
                raise CheckFailed("distribution %s/%s: steps %r, file %r" % (run, tag, got, steps))
            n += 1
    print("ok histograms: %d histograms listed with their steps and counts" % n)


def check_graphs(server, disk, deadline):
    want = {run: data["graph"] for run, data in disk["runs"].items() if data["graph"]}
    if not want:
        return

    def missing(info):
        return [run for run in want if not info.get(run, {}).get("run_graph")]

    _, gaps = poll(deadline, lambda: server.get("/data/plugin/graphs/info"), missing)
    if gaps:
        raise CheckFailed("server lists no graph for runs %s" % gaps)
    for run, nodes in sorted(want.items()):
        query = urllib.parse.urlencode({"run": run, "conceptual": "false"})
        with urllib.request.urlopen("%s/data/plugin/graphs/graph?%s" % (server.base, query),
                                    timeout=5) as resp:
            pbtxt = resp.read().decode()
        lacking = [n["name"] for n in nodes if 'name: "%s"' % n["name"] not in pbtxt]
        if lacking:
            raise CheckFailed("graph of %r lacks nodes %s" % (run, lacking))
    print("ok graphs: %s" % ", ".join("%s (%d nodes)" % (r, len(n)) for r, n in sorted(want.items())))


def hparams_on_disk(disk):
    experiments = [d["hparams"][read_events.hparams_metadata.EXPERIMENT_TAG]
                   for d in disk["runs"].values()
                   if read_events.hparams_metadata.EXPERIMENT_TAG in d["hparams"]]
    if len(experiments) > 1:
        raise CheckFailed("expected at most one hparams experiment summary in the folder, "
                          "found %d" % len(experiments))
    sessions = {}
    for run, d in disk["runs"].items():
        start = d["hparams"].get(read_events.hparams_metadata.SESSION_START_INFO_TAG)
        if start is None:
            continue
        end = d["hparams"].get(read_events.hparams_metadata.SESSION_END_INFO_TAG)
        sessions[run] = {
            "hparams": start.get("hparams", {}),
            "status": end.get("status", "STATUS_UNKNOWN") if end else None,
        }
    if not sessions:
        raise CheckFailed("no session_start_info in the folder")
    if experiments:
        return experiments[0], sessions
    return inferred_experiment(disk, sessions), sessions


def inferred_experiment(disk, sessions):
    """The experiment TensorBoard builds when no summary declares one: every
    hparam some session starts with, and as metrics every scalar tag of the
    runs inside a session's folder, the run's path below it as the group."""
    hparams = sorted({h for s in sessions.values() for h in s["hparams"]})
    metrics = set()
    for run, data in disk["runs"].items():
        for session in sessions:
            inside = session == "." or run.startswith(session + "/")
            if inside and run != session:
                group = run if session == "." else run[len(session) + 1:]
                metrics.update((group, tag) for tag in data["scalars"])
    return {
        "hparamInfos": [{"name": h} for h in hparams],
        "metricInfos": [{"name": {"group": g, "tag": t}} for g, t in sorted(metrics)],
    }


def last_scalar(disk, session, group, tag):
    run = group if session == "." else "%s/%s" % (session, group)
    points = disk["runs"].get(run, {}).get("scalars", {}).get(tag)
    return max(points)[1] if points else None


def check_hparams(server, disk, deadline):
    experiment, sessions = hparams_on_disk(disk)
    hparam_names = [h["name"] for h in experiment.get("hparamInfos", [])]
    metrics = [(m["name"].get("group", ""), m["name"]["tag"])
               for m in experiment.get("metricInfos", [])]

    def exp_missing(answer):
        names = {h["name"] for h in answer.get("hparamInfos", [])}
        got = {(m["name"].get("group", ""), m["name"]["tag"]) for m in answer.get("metricInfos", [])}
        return sorted(set(hparam_names) - names) + ["%s/%s" % m for m in metrics if m not in got]

    _, gaps = poll(deadline, lambda: server.get("/data/plugin/hparams/experiment",
                                                {"experimentName": ""}), exp_missing)
    if gaps:
        raise CheckFailed("hparams experiment lacks %s" % gaps)
    print("ok hparams experiment: hparams %s, metrics %s"
          % (hparam_names, ["%s/%s" % m for m in metrics]))

    request = {
        "experimentName": "",
        "allowedStatuses": ALL_STATUSES,
        "colParams": [{"hparam": h} for h in hparam_names]
        + [{"metric": {"group": g, "tag": t}} for g, t in metrics],
        "startIndex": 0,
        "sliceSize": 100000,
    }
    expected_metrics = {
        s: {(g, t): last_scalar(disk, s, g, t) for g, t in metrics} for s in sessions
    }

    def sessions_missing(answer):
        seen = {}
        for group in answer.get("sessionGroups", []):
            for sess in group.get("sessions", []):
                seen[sess["name"]] = (group, sess)
        gaps = []
        for name, want in sessions.items():
            if name not in seen:
                gaps.append("session %r not listed" % name)
                continue
            group, sess = seen[name]
            for h, v in want["hparams"].items():
                if not same_value(group.get("hparams", {}).get(h), v):
                    gaps.append("session %r hparam %s: server %r, file %r"
                                % (name, h, group.get("hparams", {}).get(h), v))
            if want["status"] is not None and sess.get("status", "STATUS_UNKNOWN") != want["status"]:
                gaps.append("session %r status: server %s, file %s"
                            % (name, sess.get("status"), want["status"]))
            got = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"]
                   for m in sess.get("metricValues", [])}
            for metric, value in expected_metrics[name].items():
                if value is not None and not (metric in got and close(got[metric], value)):
                    gaps.append("session %r metric %s/%s: server %r, file %r"
                                % (name, metric[0], metric[1], got.get(metric), value))
        return gaps

    _, gaps = poll(deadline, lambda: server.get("/data/plugin/hparams/session_groups", request),
                   sessions_missing)
    if gaps:
        raise CheckFailed("hparams sessions: %s" % "; ".join(gaps))
    n_values = sum(v is not None for m in expected_metrics.values() for v in m.values())
    if metrics and n_values == 0:
        raise CheckFailed("no experiment metric has any value in the folder")
    print("ok hparams sessions: %d sessions listed with hparams, status and %d metric values"
          % (len(sessions), n_values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logdir")
    parser.add_argument("--expect-run", action="append", default=[], metavar="NAME")
    parser.add_argument("--expect-tags", default="", metavar="a,b")
    parser.add_argument("--hparams", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    args = parser.parse_args()
    if not os.path.isdir(args.logdir):
        parser.error("%s is not a folder" % args.logdir)
    expect_tags = [t for t in args.expect_tags.split(",") if t]

    started = time.monotonic()
    deadline = started + args.timeout
    disk = read_events.read_logdir(args.logdir)
    server = Server(args.logdir)
    try:
        server.wait_up(deadline)
        print("ok server: up at %s after %.1f s" % (server.base, time.monotonic() - started))
        check_scalars(server, disk, args.expect_run, expect_tags, deadline)
        check_histograms(server, disk, deadline)
        check_graphs(server, disk, deadline)
        if args.hparams:
            check_hparams(server, disk, deadline)
    except CheckFailed as e:
        print("FAILED: %s" % e, file=sys.stderr)
        print("--- tensorboard output\n%s" % server.output()[-4000:], file=sys.stderr)
        return 1
    finally:
        server.stop()
    print("ok all in %.1f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
