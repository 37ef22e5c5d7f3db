"""The client link: a Phoenix Channels V2 socket client in plain asyncio (phoenix.js 1.8 behaviour).

sock = Socket(url, token=get_token)        # veraltheim.client.net.socket
await sock.connect()
ch = sock.channel("lobby")
await ch.join()
reply = await ch.push("ping", {"n": 1})

One concept per module (socket, channel, push, presence, state); the package imports none of
them, so the app's first frame does not wait for websockets.
"""
