from dify_plugin import DifyPluginEnv, Plugin

# The same SDK settings as the Xinference plugin's main.py, so both stand on the same floor.
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=600))

if __name__ == "__main__":
    plugin.run()
