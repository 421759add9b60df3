'use strict';
// The S3-compatible server of the S3 checkpoint store test: @20minutes/s3rver (pinned in package-lock.json), which
// checks AWS Signature V4 (credentials S3RVER / S3RVER), on 127.0.0.1 at a port the kernel picks. Writes "port=N"
// to file descriptor 3 once it listens (its standard output is left to its log, with ESR_S3_VERBOSE=1). Stops when its
// standard input closes (the test that started it is done or died) or on SIGTERM.
// Usage: node s3server.js DATA_DIR 3>PORT_PIPE
const fs = require('fs');
const S3rver = require('@20minutes/s3rver');

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: !process.env.ESR_S3_VERBOSE,
  directory: process.argv[2],
});
server.run().then(
  (addr) => {
    fs.writeSync(3, `port=${addr.port}\n`);
    fs.closeSync(3);
  },
  (e) => {
    process.stderr.write(`s3server: ${e.stack || e}\n`);
    process.exit(1);
  },
);
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
