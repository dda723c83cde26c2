"""The machine picker shown when online_fit gets no machine_ids in a
terminal or in Jupyter. Its words (the menu, the prompt, how an answer
reads) are the CLI's (src/client/machine_menu.h, bound); the asking stays
here, since Jupyter's input() goes through the kernel."""
import json
import sys
from typing import Any, Callable, List

from trainyard._native import native


def interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except Exception:  # noqa: BLE001
        return False


def pick(client: Any, ask: Callable[[str], str] = input) -> List[str]:
    """Lists GET /v1/machines' types on stderr and asks until the answer
    names machines (numbers or names, comma-separated; empty: the default)."""
    types = json.dumps(json.loads(client.get("/v1/machines")).get("types", []))
    if types == "[]":
        return []
    yard = native()
    menu, prompt = yard.machine_menu(types)
    print(menu, end="", file=sys.stderr)
    while True:
        try:
            return yard.parse_machine_choice(types, ask(prompt))
        except yard.YardError as e:
            print(e.message, file=sys.stderr)
