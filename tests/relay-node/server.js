// rtsp-streaming-server as a relay: cameras publish to PUBLISH_PORT (ANNOUNCE/RECORD, as
// ffmpeg -f rtsp does), recorders read from CLIENT_PORT; RTP over UDP only, on ports from
// RTP_PORT. tools/setup.sh installs the package into .venv/node (NVR_NODE_MODULES).
const path = require('path');
const RtspServer = require(path.join(process.env.NVR_NODE_MODULES, 'rtsp-streaming-server')).default;
const [publish, client, rtp] = process.argv.slice(2).map(Number);
const server = new RtspServer({ serverPort: publish, clientPort: client, rtpPortStart: rtp, rtpPortCount: 40 });
server.start().then(() => console.log('READY')).catch((e) => { console.error(e); process.exit(1); });
