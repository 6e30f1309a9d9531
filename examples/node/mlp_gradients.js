// gradserve from Node.js: sends a two-layer MLP (Linear -> Tanh -> Linear ->
// MSELoss) to a gradserve server, asks for the loss and the gradient of every
// parameter and of the input, and checks each against the same forward and
// backward pass computed here in JavaScript (float64).
//
//   cd examples/node && npm ci && node mlp_gradients.js --server localhost:50051
//
// Exits 0 when every gradient matches (rtol 1e-4, atol 1e-6), 1 otherwise.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const server = flag('server', 'localhost:50051');
const protoDir = flag('proto', path.join(__dirname, '..', '..', 'proto'));

const definition = protoLoader.loadSync('gradserve/v1/gradient_service.proto', {
  includeDirs: [protoDir], keepCase: true, longs: Number, enums: String, defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).gradserve.v1;

// A deterministic pseudo-random generator (mulberry32), values in [-1, 1).
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

// A row-major matrix: { rows, cols, v: Float64Array }, values rounded to
// float32 (what the wire carries).
function matrix(rows, cols, next, scale = 1) {
  const v = new Float64Array(rows * cols);
  for (let i = 0; i < v.length; i++) v[i] = Math.fround(next() * scale);
  return { rows, cols, v };
}

function tensor(m, shape) {
  const f = Float32Array.from(m.v);
  return { dtype: 'DATA_TYPE_FLOAT32', shape, data: Buffer.from(f.buffer) };
}

function fromTensor(t) {
  const bytes = Buffer.from(t.data);
  const f = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  return { shape: t.shape.map(Number), v: Float64Array.from(f) };
}

// y[n, o] = sum_i x[n, i] W[o, i] + b[o]
function linear(x, W, b) {
  const y = { rows: x.rows, cols: W.rows, v: new Float64Array(x.rows * W.rows) };
  for (let n = 0; n < x.rows; n++) {
    for (let o = 0; o < W.rows; o++) {
      let s = b.v[o];
      for (let i = 0; i < x.cols; i++) s += x.v[n * x.cols + i] * W.v[o * W.cols + i];
      y.v[n * y.cols + o] = s;
    }
  }
  return y;
}

// The backward pass of y = linear(x, W, b) given dy: dx, dW, db.
function linearBackward(x, W, dy) {
  const dx = new Float64Array(x.rows * x.cols);
  const dW = new Float64Array(W.rows * W.cols);
  const db = new Float64Array(W.rows);
  for (let n = 0; n < x.rows; n++) {
    for (let o = 0; o < W.rows; o++) {
      const g = dy[n * W.rows + o];
      db[o] += g;
      for (let i = 0; i < x.cols; i++) {
        dW[o * W.cols + i] += g * x.v[n * x.cols + i];
        dx[n * x.cols + i] += g * W.v[o * W.cols + i];
      }
    }
  }
  return { dx, dW, db };
}

function reference(p) {
  const h = linear(p.x, p.W1, p.b1);
  const a = { rows: h.rows, cols: h.cols, v: h.v.map(Math.tanh) };
  const y = linear(a, p.W2, p.b2);
  let loss = 0;
  const dy = new Float64Array(y.v.length);
  for (let i = 0; i < y.v.length; i++) {
    const d = y.v[i] - p.t.v[i];
    loss += d * d / y.v.length;            // MSELoss, reduction "mean"
    dy[i] = 2 * d / y.v.length;
  }
  const g2 = linearBackward(a, p.W2, dy);
  const dh = g2.dx.map((g, i) => g * (1 - a.v[i] * a.v[i]));   // tanh' = 1 - tanh²
  const g1 = linearBackward(p.x, p.W1, dh);
  return { loss, gradients: { W1: g1.dW, b1: g1.db, W2: g2.dW, b2: g2.db, x: g1.dx } };
}

function main() {
  const next = random(42);
  const p = {
    x: matrix(4, 3, next), W1: matrix(5, 3, next, 0.8), b1: matrix(1, 5, next, 0.1),
    W2: matrix(2, 5, next, 0.8), b2: matrix(1, 2, next, 0.1), t: matrix(4, 2, next),
  };
  const node = (name, op, inputs, outputs) => ({ name, op, inputs, outputs });
  const request = {
    graph: {
      inputs: ['x', 't'],
      nodes: [node('fc1', 'Linear', ['x', 'W1', 'b1'], ['h']),
              node('act', 'Tanh', ['h'], ['a']),
              node('fc2', 'Linear', ['a', 'W2', 'b2'], ['y']),
              node('loss', 'MSELoss', ['y', 't'], ['L'])],
      parameters: { W1: tensor(p.W1, [5, 3]), b1: tensor(p.b1, [5]),
                    W2: tensor(p.W2, [2, 5]), b2: tensor(p.b2, [2]) },
    },
    // x as raw bytes, t in the convenience form (float_values).
    feeds: { x: tensor(p.x, [4, 3]),
             t: { dtype: 'DATA_TYPE_FLOAT32', shape: [4, 2], float_values: Array.from(p.t.v) } },
    loss: 'L',
    wrt: ['W1', 'b1', 'W2', 'b2', 'x'],
  };
  const client = new v1.GradientService(server, grpc.credentials.createInsecure());
  client.Compute(request, { deadline: Date.now() + 30000 }, (error, reply) => {
    client.close();
    if (error) {
      console.error(`error: ${grpc.status[error.code]}: ${error.details}`);
      process.exit(1);
    }
    const expected = reference(p);
    let failures = 0;
    const check = (name, got, want) => {
      let worst = 0;
      let ok = got.length === want.length;
      for (let i = 0; ok && i < want.length; i++) {
        const err = Math.abs(got[i] - want[i]);
        worst = Math.max(worst, err);
        if (err > 1e-6 + 1e-4 * Math.abs(want[i])) ok = false;
      }
      console.log(`${name.padEnd(4)} ${String(want.length).padStart(3)} values  ` +
                  `max abs diff ${worst.toExponential(2)}  ${ok ? 'ok' : 'MISMATCH'}`);
      if (!ok) failures++;
    };
    check('L', fromTensor(reply.outputs.L).v, [expected.loss]);
    for (const name of request.wrt) {
      check(`d${name}`, fromTensor(reply.gradients[name]).v, expected.gradients[name]);
    }
    console.log(failures ? `${failures} mismatch(es)` : 'every gradient matches');
    process.exit(failures ? 1 : 0);
  });
}

main();
