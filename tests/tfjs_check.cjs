// Runs a TF.js graph model in Node on TF.js's pure-JS CPU backend and writes its output:
//   node tests/tfjs_check.cjs SOURCE INPUTS.bin N,H,W,C OUTPUT.bin
// SOURCE is an export folder (read from disk), or a URL loaded as web code does:
// tf.loadGraphModel(URL, {fromTFHub: true}). INPUTS.bin and OUTPUT.bin hold little-endian float32.
// Prints one JSON line: the backend, the output's shape and the signature's names.
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

function fromFolder(folder) {
  return {
    load: async () => {
      const model = JSON.parse(fs.readFileSync(path.join(folder, "model.json"), "utf8"));
      const specs = [];
      const shards = [];
      for (const group of model.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) shards.push(fs.readFileSync(path.join(folder, p)));
      }
      const data = Buffer.concat(shards);
      return {
        modelTopology: model.modelTopology,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        weightSpecs: specs,
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      };
    },
  };
}

async function main() {
  const [source, inputs, shapeText, output] = process.argv.slice(2);
  await tf.setBackend("cpu");
  const isUrl = /^https?:\/\//.test(source);
  const model = isUrl ? await tf.loadGraphModel(source, { fromTFHub: true }) : await tf.loadGraphModel(fromFolder(source));
  const bytes = fs.readFileSync(inputs);
  const shape = shapeText.split(",").map(Number);
  const x = tf.tensor(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), shape, "float32");
  const y = model.predict(x);
  fs.writeFileSync(output, Buffer.from((await y.data()).buffer));
  const names = { inputs: Object.keys(model.signature.inputs), outputs: Object.keys(model.signature.outputs) };
  console.log(JSON.stringify({ backend: tf.getBackend(), shape: y.shape, ...names }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
