/**
 * The functions our C kernels module exports (c/ddpm_kernels.c), as TypeScript calls them: every
 * pointer is a byte offset into the tfjs-wasm heap. heap-kernels.ts wraps them as tensor operations.
 */
export interface KernelExports {
  group_norm_forward(
    x: number,
    b: number,
    hw: number,
    c: number,
    groups: number,
    gamma: number,
    beta: number,
    eps: number,
    swish: number,
    out: number,
    sig: number,
    mean: number,
    rstd: number,
    scratch: number,
  ): void;
  group_norm_backward(
    dy: number,
    x: number,
    sig: number,
    out: number,
    b: number,
    hw: number,
    c: number,
    groups: number,
    gamma: number,
    mean: number,
    rstd: number,
    swish: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    scratch: number,
  ): void;
  pad_to_channels_first(
    x: number,
    b: number,
    h: number,
    w: number,
    c: number,
    top: number,
    left: number,
    h2: number,
    w2: number,
    out: number,
  ): void;
  transpose_last2(src: number, batch: number, m: number, n: number, dst: number): void;
  split_channels(src: number, pixels: number, ca: number, cb: number, a: number, b: number): void;
  concat_channels(a: number, b: number, pixels: number, ca: number, cb: number, out: number): void;
  dropout(x: number, n: number, seed: number, threshold: number, scale: number, out: number): void;
  softmax(x: number, rows: number, n: number, y: number): void;
  softmax_grad(y: number, dy: number, rows: number, n: number, dx: number): void;
  sum_rows(x: number, rows: number, n: number, out: number): void;
  winograd_conv(
    x: number,
    u: number,
    bias: number,
    imageBias: number,
    residual: number,
    b: number,
    h: number,
    w: number,
    cin: number,
    cout: number,
    y: number,
    scratch: number,
  ): void;
  direct_conv(
    x: number,
    g: number,
    bias: number,
    b: number,
    h: number,
    w: number,
    cin: number,
    k: number,
    stride: number,
    padTop: number,
    padLeft: number,
    ho: number,
    wo: number,
    cout: number,
    y: number,
    scratch: number,
  ): void;
  direct_conv_filter_grad(
    x: number,
    dy: number,
    b: number,
    h: number,
    w: number,
    cin: number,
    k: number,
    stride: number,
    padTop: number,
    padLeft: number,
    ho: number,
    wo: number,
    cout: number,
    dg: number,
    scratch: number,
  ): void;
  direct_conv_input_grad(
    dy: number,
    g: number,
    b: number,
    h: number,
    w: number,
    cin: number,
    k: number,
    stride: number,
    padTop: number,
    padLeft: number,
    ho: number,
    wo: number,
    cout: number,
    dx: number,
    scratch: number,
  ): void;
  winograd_filter_products(
    x: number,
    dy: number,
    b: number,
    h: number,
    w: number,
    cin: number,
    cout: number,
    du: number,
    scratch: number,
  ): void;
  winograd_rotate(u: number, cin: number, cout: number, out: number): void;
  winograd_filter(g: number, n: number, u: number): void;
  winograd_filter_grad(du: number, n: number, dg: number): void;
  matmul_tn(a: number, b: number, batch: number, t: number, m: number, n: number, out: number): void;
  matmul_nn(
    a: number,
    b: number,
    bias: number,
    residual: number,
    batch: number,
    m: number,
    k: number,
    n: number,
    out: number,
  ): void;
  adam_ema_step(
    p: number,
    g: number,
    m: number,
    v: number,
    ema: number,
    n: number,
    clip: number,
    scale: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    lrT: number,
    decay: number,
    oneMinusDecay: number,
    pOut: number,
    mOut: number,
    vOut: number,
    emaOut: number,
  ): void;
}
