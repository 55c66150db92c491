from dify_plugin import DifyPluginEnv, Plugin

# Xinference answers can take minutes (long generations, models that are still loading);
# the per-request timeout is the user's "invoke timeout" credential, so the runtime's
# own limit must not cut a request short first.
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=1200))

if __name__ == "__main__":
    plugin.run()
