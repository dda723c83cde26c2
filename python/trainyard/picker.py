"""The machine picker shown when online_fit gets no machine_ids in a
terminal or in Jupyter (the CLI's src/cli/picker.cc, over GET /v1/machines)."""
import json
import sys


def interactive():
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except Exception:  # noqa: BLE001
        return False


def pick(client, ask=input):
    types = json.loads(client.get("/v1/machines")).get("types", [])
    if not types:
        return []
    default = next((i for i, t in enumerate(types) if t.get("default")), 0)
    lines = ["Choose machines, in order of preference:"]
    for i, t in enumerate(types):
        lines.append(f"  {i + 1:2d}) {t.get('name', ''):<18} {t.get('cpus', 0):3d} cpus {t.get('gpus', 0):2d} gpus "
                     f"{t.get('gpu_model', ''):<10} spot ${t.get('spot_price', 0):.3f}/h  "
                     f"on-demand ${t.get('on_demand_price', 0):.3f}/h  {t.get('available', 0)} available"
                     + ("  (default)" if t.get("default") else ""))
    print("\n".join(lines), file=sys.stderr)
    while True:
        answer = ask(f"Numbers or names, comma-separated [{default + 1}]: ")
        out, bad = [], None
        for item in (s.strip() for s in answer.split(",")):
            if not item:
                continue
            if item.isdigit():
                n = int(item)
                if not 1 <= n <= len(types):
                    bad = f"no machine number {item} (1-{len(types)})"
                    break
                out.append(types[n - 1]["name"])
            else:
                out.append(item)
        if bad:
            print(bad, file=sys.stderr)
            continue
        return out or [types[default]["name"]]
