// The mask painter for edit and inpaint: paint over the image the area to edit.
//
// Ideogram's masks are black where the image is to be edited and white where it is kept, and the
// same pixel size as the image. The painter keeps its strokes on a canvas of the image's own pixel
// size (shown scaled over the image), so the exported PNG matches the image exactly whatever the
// screen size; painted pixels become (0,0,0) and the rest (255,255,255), fully opaque.

import { el } from "./ui.js";

const PAINT = "rgb(255, 0, 64)"; // what a stroke looks like on screen (the overlay is half transparent)
// the largest picture painted on: the server's default max_input_pixels, and about what a phone's canvas holds
const PAINT_MAX_PIXELS = 4096 * 4096;

export class MaskPainter {
  /** Build the painter's DOM (hidden until an image is set); `root` is the element to insert. */
  constructor(prefix = "pg-mask") {
    this.prefix = prefix;
    this.tool = "brush";
    this.width = 0;
    this.height = 0;
    this.drawing = null; // {pointerId, x, y} while a stroke is in progress
    this.painted = false;
    this.objectUrl = null;
    this.loads = 0; // setImage calls so far: only the newest one's picture is shown

    const id = (s) => `${prefix}-${s}`;
    this.brushBtn = el("button", { type: "button", id: id("brush"), "aria-pressed": "true", class: "pg-tool" }, "Brush");
    this.eraserBtn = el("button", { type: "button", id: id("eraser"), "aria-pressed": "false", class: "pg-tool secondary" }, "Eraser");
    this.size = el("input", { type: "range", id: id("size"), min: "1", max: "200", value: "40", "aria-describedby": id("size-hint") });
    this.sizeOut = el("output", { id: id("size-value"), for: id("size") }, "40 px");
    const fill = el("button", { type: "button", id: id("fill"), class: "secondary" }, "Fill all");
    const invert = el("button", { type: "button", id: id("invert"), class: "secondary" }, "Invert");
    const clear = el("button", { type: "button", id: id("clear"), class: "secondary" }, "Clear");
    this.base = el("img", { id: id("image"), alt: "The image being edited", class: "pg-mask-base", draggable: "false" });
    this.canvas = el("canvas", {
      id: id("canvas"), class: "pg-mask-canvas", role: "img",
      "aria-label": "Mask painter: drag on the image to paint the area to edit (Fill all paints everything)",
    });
    this.status = el("p", { id: id("status"), class: "hint", role: "status" }, "Nothing painted yet.");
    // the keyboard's way to paint (and a precise one): a rectangle in image pixels, with the current tool
    const number = (name, label) => el("span", { class: "pg-rect-field" },
      el("label", { for: id(`rect-${name}`) }, label),
      el("input", { type: "number", id: id(`rect-${name}`), min: "0", step: "1", inputmode: "numeric" }));
    const applyRect = el("button", { type: "button", id: id("rect-apply"), class: "secondary" }, "Paint rectangle");
    const rect = el("details", { id: id("rect"), class: "pg-rect" },
      el("summary", null, "Paint a rectangle by numbers (keyboard)"),
      el("p", { class: "hint" }, "In image pixels from the top left corner; the brush paints it, the eraser clears it."),
      el("div", { class: "pg-rect-fields" }, number("x", "Left"), number("y", "Top"), number("w", "Width"),
         number("h", "Height"), applyRect));
    this.root = el("section", { id: prefix, class: "pg-mask", hidden: true, "aria-labelledby": id("title") },
      el("h2", { id: id("title") }, "Mask: paint the area to edit"),
      el("p", { class: "hint" },
        "Painted parts (shown in red) are the area to edit; they are sent as black in the mask. Unpainted parts are kept (white)."),
      el("div", { class: "pg-toolbar", role: "toolbar", "aria-label": "Mask tools" },
        this.brushBtn, this.eraserBtn,
        el("span", { class: "pg-size" }, el("label", { for: id("size") }, "Brush size"), this.size, this.sizeOut),
        fill, invert, clear),
      el("small", { id: id("size-hint"), class: "hint" }, "Brush diameter in image pixels."),
      el("div", { class: "pg-mask-stage" }, this.base, this.canvas),
      this.status, rect);

    this.brushBtn.addEventListener("click", () => this.setTool("brush"));
    this.eraserBtn.addEventListener("click", () => this.setTool("eraser"));
    this.size.addEventListener("input", () => { this.sizeOut.textContent = `${this.size.value} px`; });
    fill.addEventListener("click", () => this.fill());
    invert.addEventListener("click", () => this.invert());
    clear.addEventListener("click", () => this.clear());
    const paintRect = () => {
      const v = (name) => Number(document.getElementById(id(`rect-${name}`)).value || 0);
      this.paintRect(v("x"), v("y"), v("w"), v("h"));
    };
    applyRect.addEventListener("click", paintRect);
    rect.addEventListener("keydown", (e) => { // Enter in a number paints, and never submits the playground's form
      if (e.key === "Enter" && e.target.tagName === "INPUT") {
        e.preventDefault();
        paintRect();
      }
    });
    this.canvas.addEventListener("pointerdown", (e) => this.down(e));
    this.canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      this.canvas.addEventListener(type, (e) => this.up(e));
    }
  }

  setTool(tool) {
    this.tool = tool;
    this.brushBtn.setAttribute("aria-pressed", String(tool === "brush"));
    this.eraserBtn.setAttribute("aria-pressed", String(tool === "eraser"));
    this.brushBtn.classList.toggle("secondary", tool !== "brush");
    this.eraserBtn.classList.toggle("secondary", tool !== "eraser");
    this.canvas.dataset.tool = tool;
  }

  /**
   * Show `file` (an image File/Blob) to paint on; resolves once it is decoded. A null file hides the
   * painter. Only the newest call takes effect: choosing another image while one decodes drops the
   * first (neither its error nor its picture shows). A photo stored rotated (an EXIF orientation, as
   * phones save portraits) is shown upright by the browser; `uprightImage()` then gives the picture
   * as shown, to send in place of the file, so image and mask share one pixel grid.
   */
  async setImage(file) {
    const mine = ++this.loads;
    this.orientation = 1;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
    this.painted = false;
    this.root.hidden = true;
    this.width = this.height = 0;
    if (!file) {
      this.base.removeAttribute("src");
      return;
    }
    this.objectUrl = URL.createObjectURL(file);
    this.base.src = this.objectUrl;
    try {
      await this.base.decode();
    } catch (_) {
      if (mine !== this.loads) return;
      throw new Error("This browser cannot display the chosen image, so no mask can be painted on it.");
    }
    const orientation = await exifOrientation(file);
    if (mine !== this.loads) return;
    this.orientation = orientation;
    if (this.base.naturalWidth * this.base.naturalHeight > PAINT_MAX_PIXELS) {
      throw new Error(`The image is ${this.base.naturalWidth}x${this.base.naturalHeight}: too large to paint a mask on here `
                      + `(at most ${PAINT_MAX_PIXELS / 1e6} megapixels, 4096x4096, the server's default limit). Choose a smaller image.`);
    }
    this.width = this.base.naturalWidth;
    this.height = this.base.naturalHeight;
    this.canvas.width = this.width;
    this.canvas.height = this.height;
    const longest = Math.max(this.width, this.height);
    this.size.max = String(Math.max(8, Math.round(longest / 2)));
    this.size.value = String(Math.max(1, Math.round(longest / 12)));
    this.sizeOut.textContent = `${this.size.value} px`;
    this.canvas.dataset.width = String(this.width);
    this.canvas.dataset.height = String(this.height);
    this.context().clearRect(0, 0, this.width, this.height);
    this.root.hidden = false;
    this.report();
  }

  context() {
    return this.canvas.getContext("2d", { willReadFrequently: true });
  }

  /** Pointer position in image pixels. */
  point(e) {
    const rect = this.canvas.getBoundingClientRect();
    const sx = rect.width ? this.width / rect.width : 1;
    const sy = rect.height ? this.height / rect.height : 1;
    return { x: (e.clientX - rect.left) * sx, y: (e.clientY - rect.top) * sy };
  }

  stroke(from, to) {
    const ctx = this.context();
    const size = Math.max(1, Number(this.size.value) || 1);
    ctx.save();
    ctx.globalCompositeOperation = this.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = PAINT;
    ctx.fillStyle = PAINT;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = size;
    ctx.beginPath();
    if (from.x === to.x && from.y === to.y) {
      ctx.arc(to.x, to.y, size / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    }
    ctx.restore();
  }

  down(e) {
    if (!this.width || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    try { this.canvas.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events have no capture */ }
    const p = this.point(e);
    this.drawing = { pointerId: e.pointerId, ...p };
    this.stroke(p, p);
  }

  move(e) {
    if (!this.drawing || e.pointerId !== this.drawing.pointerId) return;
    e.preventDefault();
    const p = this.point(e);
    this.stroke(this.drawing, p);
    this.drawing = { pointerId: e.pointerId, ...p };
  }

  up(e) {
    if (!this.drawing || e.pointerId !== this.drawing.pointerId) return;
    this.drawing = null;
    this.report();
  }

  /** Paint (brush) or clear (eraser) a rectangle given in image pixels, clipped to the image. */
  paintRect(x, y, w, h) {
    if (!this.width || ![x, y, w, h].every(Number.isFinite)) return;
    const left = Math.max(0, Math.min(this.width, Math.round(x)));
    const top = Math.max(0, Math.min(this.height, Math.round(y)));
    const right = Math.max(left, Math.min(this.width, Math.round(x + w)));
    const bottom = Math.max(top, Math.min(this.height, Math.round(y + h)));
    const ctx = this.context();
    if (this.tool === "eraser") {
      ctx.clearRect(left, top, right - left, bottom - top);
    } else {
      ctx.save();
      ctx.fillStyle = PAINT;
      ctx.fillRect(left, top, right - left, bottom - top);
      ctx.restore();
    }
    this.report();
  }

  fill() {
    if (!this.width) return;
    const ctx = this.context();
    ctx.save();
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = PAINT;
    ctx.fillRect(0, 0, this.width, this.height);
    ctx.restore();
    this.report();
  }

  clear() {
    if (!this.width) return;
    this.context().clearRect(0, 0, this.width, this.height);
    this.report();
  }

  invert() {
    if (!this.width) return;
    const ctx = this.context();
    const img = ctx.getImageData(0, 0, this.width, this.height);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      const on = d[i + 3] >= 128;
      d[i] = 255; d[i + 1] = 0; d[i + 2] = 64; d[i + 3] = on ? 0 : 255;
    }
    ctx.putImageData(img, 0, 0);
    this.report();
  }

  /** The share of the image painted (0..1): what the status line says. */
  coverage() {
    if (!this.width) return 0;
    const d = this.context().getImageData(0, 0, this.width, this.height).data;
    let on = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) on += 1;
    return on / (this.width * this.height);
  }

  report() {
    const c = this.coverage();
    this.painted = c > 0;
    this.canvas.dataset.painted = String(this.painted);
    this.status.textContent = (this.painted
      ? `Painted ${(c * 100).toFixed(c < 0.01 ? 2 : 1)}% of the image (${this.width}x${this.height}).`
      : `Nothing painted yet (${this.width}x${this.height}).`)
      + (this.orientation > 1 ? " The photo is stored rotated; it is sent upright, as shown, with the mask." : "");
  }

  /** The picture as shown (a JPEG), when the file is stored rotated; else null (send the file itself). */
  async uprightImage() {
    if (this.orientation <= 1 || !this.width) return null;
    const out = document.createElement("canvas");
    out.width = this.width;
    out.height = this.height;
    out.getContext("2d").drawImage(this.base, 0, 0, this.width, this.height); // drawn with its EXIF rotation applied
    const blob = await new Promise((resolve, reject) => {
      out.toBlob((b) => (b ? resolve(b) : reject(new Error("The upright image could not be encoded."))), "image/jpeg", 0.95);
    });
    return new File([blob], "upright.jpg", { type: "image/jpeg" });
  }

  /** The mask as a PNG Blob: the image's pixel size, painted = black, the rest white, opaque. */
  toBlob() {
    const out = document.createElement("canvas");
    out.width = this.width;
    out.height = this.height;
    const octx = out.getContext("2d");
    const src = this.context().getImageData(0, 0, this.width, this.height).data;
    const img = octx.createImageData(this.width, this.height);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      const v = src[i + 3] >= 128 ? 0 : 255;
      d[i] = v; d[i + 1] = v; d[i + 2] = v; d[i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return new Promise((resolve, reject) => {
      out.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("The mask could not be encoded."))), "image/png");
    });
  }

  dispose() {
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
  }
}

/**
 * The EXIF orientation (1..8) of a JPEG, read from its APP1 segment; 1 for anything else. Browsers
 * show such photos rotated, while the stored pixel grid (what servers size-check a mask against)
 * is not.
 */
export async function exifOrientation(blob) {
  let b;
  try {
    b = new DataView(await blob.slice(0, 256 * 1024).arrayBuffer());
  } catch (_) {
    return 1;
  }
  if (b.byteLength < 4 || b.getUint16(0) !== 0xFFD8) return 1;
  let p = 2;
  while (p + 4 <= b.byteLength) {
    const marker = b.getUint16(p);
    if ((marker & 0xFF00) !== 0xFF00 || marker === 0xFFDA) return 1; // not a marker, or the image data starts
    if (marker === 0xFFE1 && p + 18 <= b.byteLength && b.getUint32(p + 4) === 0x45786966 && b.getUint16(p + 8) === 0) {
      const t = p + 10; // the TIFF header after "Exif\0\0"
      const little = b.getUint16(t) === 0x4949;
      const ifd = t + b.getUint32(t + 4, little);
      if (ifd + 2 > b.byteLength) return 1;
      for (let i = 0, n = b.getUint16(ifd, little); i < n; i += 1) {
        const e = ifd + 2 + i * 12;
        if (e + 12 > b.byteLength) return 1;
        if (b.getUint16(e, little) === 0x0112) {
          const v = b.getUint16(e + 8, little);
          return v >= 1 && v <= 8 ? v : 1;
        }
      }
      return 1;
    }
    p += 2 + b.getUint16(p + 2);
  }
  return 1;
}
