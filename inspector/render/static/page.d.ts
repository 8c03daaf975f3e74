// Types of the page scripts' shared globals and of the JSON Python embeds in a page.
// Only for the type checker (`make lint`: tsc --checkJs, see tsconfig.json); never shipped to a page.

/** An array embedded by inspector/render/encode.py. */
interface EncodedArray {
  shape: number[];
  dtype: "uint8" | "uint16" | "float16";
  scale?: number;
  encoding: string;
  /** one zlib stream for the whole array ... */
  data?: string;
  /** ... or one per layer (encode_layers) */
  chunks?: string[];
  /** false: decoded layer by layer when a view needs it */
  eager?: boolean;
}

/** A stack of attention (PageData.stack). */
interface StackJson extends EncodedArray {
  kind: string;
  layers: number[];
  heads: number[];
  causal: boolean;
  query_tokens: string[];
  key_tokens: string[];
  query_readable: string[];
  key_readable: string[];
  query_special: boolean[];
  key_special: boolean[];
  /** max-pooled thumbnails of big stacks (block = pooled side) */
  thumbs?: EncodedArray & { block: number };
}

interface ViewPart {
  name: string | null;
  key: string;
  stack: string;
  rows: number[];
  cols: number[];
  left_text: string[];
  right_text: string[];
}

interface ViewSpec {
  id: string;
  kind: "head" | "model" | "neuron";
  label: string;
  layer_positions: number[];
  head_positions: number[] | null;
  lazy: boolean;
  parts: ViewPart[];
  params: Record<string, unknown>;
  window?: { size: number; n: number; lines: number; full_lines: number };
  /** set in the page */
  windowStart?: number;
  drawn?: boolean;
}

interface PageJson {
  format: number;
  precision: { dtype: string; max_abs_error: number };
  stacks: Record<string, StackJson>;
  vectors: Record<string, { queries: EncodedArray; keys: EncodedArray }>;
  views: ViewSpec[];
}

/** A decoded array (static/inspector.js). */
interface TensorLike {
  shape: number[];
  scale: number;
  big: boolean;
  loaded(l: number): boolean;
  load(layers?: number[]): Promise<void>;
  get(l: number, h: number, q: number, k: number): number;
  head(l: number, h: number): { values: Uint8Array | Uint16Array | Float32Array; scale: number };
}

interface InspectorApi {
  data: PageJson;
  stacks: Record<string, TensorLike>;
  thumbs: Record<string, TensorLike>;
  download(filename: string, parts: string | BlobPart[], mime: string): void;
  expectScript(kind: string): void;
  onReady(hook: (api: InspectorApi) => void | Promise<void>): void;
  start(): Promise<void>;
  fitFrame(): void;
  /** the bytes of a base64 string, and zlib bytes inflated (what the page's data is made of) */
  bytesFromBase64(text: string): Uint8Array;
  inflate(bytes: Uint8Array): Promise<Uint8Array>;
  quietConsole: Partial<Console>;
}

/** A colour scale of a figure (figure-kit.js colorScale): a d3 scale and its 256-entry RGB table. */
interface FigureScale {
  lo: number;
  hi: number;
  color: (v: number) => string;
  lut: Uint8ClampedArray;
  fmt: (v: number | null | undefined) => string;
  diverging: boolean;
}

/** One laid-out panel of a figure: its size, how it draws into a <g>, what the pointer reads. */
interface PlacedPanel {
  w: number;
  h: number;
  draw: (g: SVGGElement) => void;
  hit: (x: number, y: number) => string | null;
  click?: (x: number, y: number) => void;
}

/** How a figure is drawn: one colour range for its maps (or each its own), the grid's colours. */
interface DrawOptions {
  shared?: { lo: number; hi: number } | null;
  norm?: string;
  /** panels laid out already (the scan page's pooled maps): drawn instead of spec.panels */
  placed?: PlacedPanel[];
}

/** Lays out a panel of a kind that its own script draws (scatter.js, head-grid.js). */
type PanelKind = (
  p: PanelJson,
  api: InspectorApi | undefined,
  opts: DrawOptions,
  width: number
) => PlacedPanel;

/** What the figure scripts share (static/figure-kit.js, run before figures.js). */
interface InspectorKit {
  NS: string;
  XLINK: string;
  FONT: string;
  format(spec?: string): (v: number | null | undefined) => string;
  colorScale(cmap: string | undefined, lo: number, hi: number, fmt?: string): FigureScale;
  dark(color: string): boolean;
  textWidth(text: string, size: number, weight?: string): number;
  maxWidth(texts: string[], size: number): number;
  el(parent: Element | null, tag: string, attrs?: Record<string, string | number>, text?: string): any;
  styleAxis(sel: any, fs: number): void;
  colorBar(g: SVGGElement, scale: FigureScale, x: number, height: number, label?: ((v: number) => string) | null): void;
  legendBlock(g: SVGGElement, legend: [string, string][], x: number): void;
  labelRoom(labels: string[], fs: number): number;
  axisNames(g: SVGGElement, p: PanelJson, w: number, h: number, below: number, x: number): void;
  zoomBox(label: string): { box: HTMLElement; title: HTMLElement; body: HTMLElement; note: HTMLElement };
  showTip(event: MouseEvent, text: string): void;
  hideTip(): void;
  hover(svg: SVGSVGElement): void;
  svgSource(svg: SVGSVGElement): string;
  control(figure: Element, label: string, choices: Array<[string, string]>, value: string, onChange: (v: string) => void): void;
  downloads(figure: Element, name: string, current: () => SVGSVGElement | null): void;
  /** panel kinds drawn by later scripts: scatter (scatter.js), grid (head-grid.js) */
  panelKinds: Record<string, PanelKind>;
}

/** The figure renderer (static/figures.js). */
interface InspectorFigures {
  render(spec: FigureJson, api?: InspectorApi, opts?: DrawOptions, maxWidth?: number): SVGSVGElement;
  svgSource(svg: SVGSVGElement): string;
  drawFigure(figure: Element, api?: InspectorApi): void;
  showTip(event: MouseEvent, text: string): void;
  hideTip(): void;
  format(spec?: string): (v: number | null | undefined) => string;
}

/** FigureSpec.data() (inspector/render/figures.py). */
interface FigureJson {
  name: string;
  title: string;
  panels: PanelJson[];
  shared_scale?: boolean;
}

interface PanelJson {
  kind: "heatmap" | "scatter" | "stack" | "grid" | "profiles";
  title?: string;
  xlabel?: string;
  ylabel?: string;
  // heatmap
  rows?: string[];
  cols?: string[];
  raw_rows?: string[];
  raw_cols?: string[];
  values?: (number | null)[][];
  cmap?: string;
  vmin?: number;
  vmax?: number;
  annotate?: boolean;
  size?: number;
  canvas?: boolean;
  text?: [number, number, string][];
  colors?: string[][] | string[] | null;
  hover?: string[][];
  legend?: [string, string][];
  fmt?: string;
  /** values are log10 of what they show (colour bar and hover read 10^v) */
  log?: boolean;
  /** colour of cells without a value (default light grey) */
  blank?: string;
  // profiles (scan-glance.js): (layer, head, bin) shares, sink share per head, bin names
  profile?: number[][][];
  sink?: number[][];
  bins?: string[];
  sink_label?: string;
  // scatter
  x?: number[];
  y?: number[];
  labels?: string[];
  /** false: axes without numbers (MDS) */
  ticks?: boolean;
  // stack / grid
  stack?: string;
  layer?: number;
  head?: number;
  norm?: "head" | "fixed";
}

interface Window {
  inspector: InspectorApi;
  inspectorFigures: InspectorFigures;
  inspectorKit: InspectorKit;
  inspectorScan: InspectorScan;
  d3: typeof import("d3");
  jQuery: any;
}

/** The scan page's readable tokens (script#scan-tokens). */
interface ScanTokens {
  tokens: string[];
  special: boolean[];
}

/** One set of pooled maps of the scan page (sections/scan_maps.py pooled_maps). */
interface ScanMapSet {
  shape: number[];
  rows: number[];
  cols: number[];
  lo: number[][];
  hi: number[][];
  data: string;
}

interface ScanMapsJson {
  layers: number[];
  heads: number[];
  n_query: number;
  n_key: number;
  scan_bins: number[];
  causal: boolean;
  thumb: ScanMapSet;
  zoom: ScanMapSet;
}

/** What scan-glance.js shares with scan-maps.js and scan.js. */
interface InspectorScan {
  fromBase64(text: string): Uint8Array;
  inflate(bytes: Uint8Array): Promise<Uint8Array>;
  plain(token: string, newlines?: boolean): string;
  tokens(): ScanTokens;
  textOf(start: number, end: number, limit: number): string;
  ranges(edges: number[]): string[];
}
