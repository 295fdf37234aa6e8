#!/usr/bin/env python3
"""Request Tracker side of the image tier (deploy/image/test.sh), through RT's REST 2.0 API
with the admin token (RT_URL, RT_ADMIN_TOKEN_FILE; the token is read from its file).

  rt_check.py create SAMPLES.jsonl   create the sample tickets and a few off-topic ones in RT,
                                     write them with RT's ids as JSON Lines to $TICKETS_IN
  rt_check.py check DECISIONS.jsonl  wait until every ticket with a symptom holds a Comment
                                     and its tags, then check: exactly one Comment (the note)
                                     on each of them, none on the others, no Correspond
"""
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

OFF_TOPIC = [
    ("Printer on floor 3 out of toner", "The printer next to the kitchen says the toner is empty."),
    ("Lunch menu for Friday", "Could the canteen post the menu for Friday's team lunch?"),
    ("Parking space request", "I start on Monday and need a parking space near building B."),
]


def rest(method, path, body=None):
    base = os.environ["RT_URL"].rstrip("/") + "/REST/2.0"
    with open(os.environ["RT_ADMIN_TOKEN_FILE"]) as f:
        token = f.read().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "token " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def create(samples):
    tickets = [json.loads(line) for line in open(samples)]
    tickets += [{"subject": s, "body": b} for s, b in OFF_TOPIC]
    with open(os.environ["TICKETS_IN"], "w") as out:
        for t in tickets:
            made = rest("POST", "/ticket", {
                "Queue": "General",
                "Subject": t["subject"],
                "Requestor": "someone@example.org",
                "Content": t["body"],
                "ContentType": "text/plain",
            })
            record = {"id": str(made["id"]), "subject": t["subject"], "body": t["body"]}
            out.write(json.dumps(record) + "\n")


def text(content):
    """An attachment's Content: RT 5 sends it base64-encoded; plain text is taken as it is."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except ValueError:
        return content


def state(tid):
    """(comment texts, number of Corresponds, Tags values) of a ticket."""
    history = rest("GET", f"/ticket/{tid}/history?fields=Type&per_page=100")
    comments, corresponds = [], 0
    for tx in history["items"]:
        if tx.get("Type") == "Comment":
            atts = rest("GET", f"/transaction/{tx['id']}/attachments?fields=Content,ContentType")
            comments.append("\n".join(text(a["Content"]) for a in atts["items"] if a.get("Content")))
        elif tx.get("Type") == "Correspond":
            corresponds += 1
    ticket = rest("GET", f"/ticket/{tid}")
    tags = [v for f in ticket.get("CustomFields", []) if f.get("name") == "Tags"
            for v in f.get("values", [])]
    return comments, corresponds, tags


def check(decisions_file):
    decisions = [json.loads(line) for line in open(decisions_file)]
    with_symptom = [d for d in decisions if d["symptoms"]]
    without = [d for d in decisions if not d["symptoms"]]
    if not with_symptom or not without:
        sys.exit(f"want tickets with and without a symptom: {len(with_symptom)} and {len(without)}")
    deadline = time.monotonic() + 180
    waiting = list(with_symptom)
    while waiting:
        comments, _, tags = state(waiting[0]["id"])
        if comments and all(t in tags for t in waiting[0]["tags"]):
            waiting.pop(0)
        elif time.monotonic() > deadline:
            sys.exit(f"ticket {waiting[0]['id']}: no note and tags after 180 s "
                     f"({len(comments)} comments, tags {tags})")
        else:
            time.sleep(0.5)
    # Anything posted twice would show by now.
    time.sleep(3)
    bad = []
    for d in decisions:
        comments, corresponds, tags = state(d["id"])
        if corresponds:
            bad.append(f"ticket {d['id']}: {corresponds} Correspond transactions")
        if not d["symptoms"]:
            if comments:
                bad.append(f"ticket {d['id']}: no symptom, yet {len(comments)} comments")
            continue
        if len(comments) != 1:
            bad.append(f"ticket {d['id']}: {len(comments)} comments, want exactly one")
            continue
        note = comments[0]
        if not note.startswith("Triage note:") or "<" in note:
            bad.append(f"ticket {d['id']}: not a plain-text triage note: {note[:200]!r}")
        for s in d["symptoms"]:
            if s["title"] not in note:
                bad.append(f"ticket {d['id']}: the note does not name {s['title']!r}")
        missing = [t for t in d["tags"] if t not in tags]
        if missing:
            bad.append(f"ticket {d['id']}: tags {missing} missing from {tags}")
    for b in bad:
        print(b, file=sys.stderr)
    if bad:
        sys.exit(1)
    print(f"RT: {len(with_symptom)} tickets with one Comment each (the note) and their tags, "
          f"{len(without)} without a symptom and without a comment, no Correspond",
          file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("create", "check"):
        sys.exit(__doc__)
    {"create": create, "check": check}[sys.argv[1]](sys.argv[2])
