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
  quietConsole: Partial<Console>;
}

/** The figure renderer (static/figures.js). */
interface InspectorFigures {
  render(spec: FigureJson, api?: InspectorApi): SVGSVGElement;
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
  kind: "heatmap" | "scatter" | "stack" | "grid";
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
  // scatter
  x?: number[];
  y?: number[];
  labels?: string[];
  // stack / grid
  stack?: string;
  layer?: number;
  head?: number;
  norm?: "head" | "fixed";
}

interface Window {
  inspector: InspectorApi;
  inspectorFigures: InspectorFigures;
  d3: typeof import("d3");
  jQuery: any;
}
