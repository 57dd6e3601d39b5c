"""Run inside the kiosk (system python3, stdlib only): is every acknowledged capture complete?

    python3 guest_check.py STATE_DIR [ACKED_IMAGE_PATH ...]  -> one JSON object on stdout
The recovery contract: image sha256 = sidecar = catalogue row, SQLite integrity ok, no temporaries.
"""
import hashlib
import json
import sqlite3
import sys
from pathlib import Path


def main(state: Path, acked: list[str]) -> dict:
    db = sqlite3.connect(f"file:{state / 'catalog.sqlite'}?mode=ro", uri=True)
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    rows = {r[0]: r[1] for r in db.execute("SELECT image, sha256 FROM captures")}
    db.close()
    temporaries = [str(p) for p in state.rglob("*.tmp")]
    bad, lost = [], []
    for sc in (state / "captures").rglob("*.json"):
        meta = json.loads(sc.read_text())
        image = sc.parent / meta["image"]
        sha = hashlib.sha256(image.read_bytes()).hexdigest() if image.exists() else None
        if sha != meta["image_sha256"] or rows.get(str(image.relative_to(state))) != sha:
            bad.append(str(image))
    for path in acked:
        p = Path(path)
        if not p.exists() or str(p.relative_to(state)) not in rows:
            lost.append(path)
    return {"integrity": integrity, "captures": len(rows), "temporaries": temporaries, "inconsistent": bad,
            "acked": len(acked), "lost": lost}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2:])))
