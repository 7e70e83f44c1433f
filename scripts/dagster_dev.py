"""Start ``dagster dev`` so that it can be stopped cleanly (see design/environment-notes.md):
reset SIGINT to default (a background shell leaves it ignored), then exec."""

import os
import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_DFL)
os.environ.setdefault("DAGSTER_HOME", os.path.abspath(".dagster"))
os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
yaml_path = os.path.join(os.environ["DAGSTER_HOME"], "dagster.yaml")
if not os.path.exists(yaml_path):
    with open("dagster.yaml") as src, open(yaml_path, "w") as dst:
        dst.write(src.read())
args = [
    "dagster",
    "dev",
    "-h",
    "127.0.0.1",
    "-p",
    os.environ.get("PORT", "3000"),
    "-w",
    "workspace.yaml",
    *sys.argv[1:],
]
os.execvp(os.path.join(os.path.dirname(sys.executable), "dagster"), args)
