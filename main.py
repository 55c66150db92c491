from dify_plugin import DifyPluginEnv, Plugin

from models.common.credentials import MAX_INVOKE_TIMEOUT

# Xinference answers can take minutes (long generations, models that are still loading);
# the per-request timeout is the user's "invoke timeout" credential. The daemon cuts every
# request at PLUGIN_MAX_EXECUTION_TIMEOUT (600 s by default), and so does the plugin.
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=int(MAX_INVOKE_TIMEOUT)))

if __name__ == "__main__":
    plugin.run()
