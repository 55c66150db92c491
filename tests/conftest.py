import sys
from pathlib import Path

# The plugin runtime imports `models.*` and `provider.*` from the plugin root (its cwd).
PLUGIN_ROOT = Path(__file__).resolve().parent.parent
if str(PLUGIN_ROOT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_ROOT))
