/**
 * The U-Net's parameter layout, without TensorFlow.js: which tensors, their shapes and their
 * order on the wire. The coordinator computes a study's update length from it (it must never
 * load tfjs), sites build the model from it (unet.ts). Architecture and citation: unet.ts.
 */

export interface UNetConfig {
  /** Image channels (1 for PET alone). */
  inChannels: number;
  /** Output classes including background (2 for tumour vs background). */
  nClasses: number;
  /** Feature maps at the first level; doubles per level. */
  base: number;
  /** Number of pooling steps; input size must be divisible by 2^depth. */
  depth: number;
  /** Training/inference slice size in pixels (size x size). */
  size: number;
}

export const DEFAULT_UNET_CONFIG: UNetConfig = { inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48 };

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Fan-in used by the He initialiser; 0 marks a bias (initialised to zero). */
  fanIn: number;
}

/** The parameter layout for a configuration, in wire order. */
export function unetParamSpecs(config: UNetConfig): ParamSpec[] {
  const { inChannels, nClasses, base, depth } = config;
  if (!(depth >= 1 && base >= 1 && inChannels >= 1 && nClasses >= 2)) throw new Error(`invalid U-Net config ${JSON.stringify(config)}`);
  const specs: ParamSpec[] = [];
  const conv = (name: string, k: number, cin: number, cout: number) => {
    specs.push({ name: `${name}/kernel`, shape: [k, k, cin, cout], fanIn: k * k * cin });
    specs.push({ name: `${name}/bias`, shape: [cout], fanIn: 0 });
  };
  const block = (name: string, cin: number, cout: number) => {
    conv(`${name}/conv1`, 3, cin, cout);
    conv(`${name}/conv2`, 3, cout, cout);
  };
  let ch = inChannels;
  for (let d = 0; d < depth; d++) {
    block(`down${d}`, ch, base * 2 ** d);
    ch = base * 2 ** d;
  }
  block('bottleneck', ch, base * 2 ** depth);
  ch = base * 2 ** depth;
  for (let d = depth - 1; d >= 0; d--) {
    const out = base * 2 ** d;
    // conv2dTranspose filter layout is [k, k, outChannels, inChannels]. With k = stride = 2
    // each output pixel sees exactly one input pixel per input channel: fan-in = ch.
    specs.push({ name: `up${d}/kernel`, shape: [2, 2, out, ch], fanIn: ch });
    specs.push({ name: `up${d}/bias`, shape: [out], fanIn: 0 });
    block(`up${d}`, out * 2, out);
    ch = out;
  }
  conv('head', 1, ch, nClasses);
  return specs;
}

/** Number of scalar parameters of a configuration. */
export function countConfigParams(config: UNetConfig): number {
  return unetParamSpecs(config).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}
