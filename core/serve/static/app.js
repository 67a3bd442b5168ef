// The live page: draw on the canvas, and on every lifted stroke send the drawing to
// POST /api/predict and show what comes back. Plain JavaScript, no library, no build step.
"use strict";

const INK_WIDTH = 22; // px on the 280 px canvas: about an MNIST stroke once scaled to 28 px
const canvas = document.getElementById("canvas");
const pen = canvas.getContext("2d");
const statusLine = document.getElementById("status");
let lastPoint = null; // where the pen is while a stroke is drawn
let sent = 0; // requests sent; an answer to an older one than the latest is dropped

// White paper, black ink: the picture predict expects from a scan (data/digit_image.py
// flattens transparency too, but an opaque picture leaves it nothing to guess).
function clearCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  pen.strokeStyle = "#000";
  pen.fillStyle = "#000";
  pen.lineWidth = INK_WIDTH;
  pen.lineCap = "round";
  pen.lineJoin = "round";
}

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function dot(point) {
  pen.beginPath();
  pen.arc(point.x, point.y, INK_WIDTH / 2, 0, 2 * Math.PI);
  pen.fill();
}

function lineTo(point) {
  pen.beginPath();
  pen.moveTo(lastPoint.x, lastPoint.y);
  pen.lineTo(point.x, point.y);
  pen.stroke();
  lastPoint = point;
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  lastPoint = canvasPoint(event);
  dot(lastPoint);
});

canvas.addEventListener("pointermove", (event) => {
  if (lastPoint === null) return;
  // A fast pen moves several times between two frames: draw every point it passed.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of events.length ? events : [event]) lineTo(canvasPoint(each));
});

function endStroke() {
  if (lastPoint === null) return;
  lastPoint = null;
  send(canvas.toDataURL("image/png"));
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearCanvas();
  showNothing();
});

// A picture file, chosen or dropped: its own bytes go to the server, as predict reads them;
// the canvas only shows it.
function readFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError(`${file.name}: not a picture (give a PNG or JPEG)`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const picture = new Image();
    picture.onload = () => {
      clearCanvas();
      const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
      const w = picture.width * scale;
      const h = picture.height * scale;
      pen.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    };
    picture.src = reader.result;
    send(reader.result);
  };
  reader.onerror = () => showError(`${file.name}: cannot read the file`);
  reader.readAsDataURL(file);
}

document.getElementById("file").addEventListener("change", (event) => {
  readFile(event.target.files[0]);
  event.target.value = ""; // the same file again is a new choice
});
canvas.addEventListener("dragover", (event) => {
  event.preventDefault();
  canvas.classList.add("dropping");
});
canvas.addEventListener("dragleave", () => canvas.classList.remove("dropping"));
canvas.addEventListener("drop", (event) => {
  event.preventDefault();
  canvas.classList.remove("dropping");
  readFile(event.dataTransfer.files[0]);
});

async function send(dataUrl) {
  const mine = ++sent;
  statusLine.className = "";
  statusLine.textContent = "reading…";
  const started = performance.now();
  let answer;
  try {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: dataUrl }),
    });
    answer = await response.json();
  } catch (error) {
    if (mine === sent) showError(`no answer from the server (${error.message})`);
    return;
  }
  if (mine !== sent) return; // a newer stroke is on its way
  if (answer.error) {
    showError(answer.error);
    return;
  }
  show(answer);
  const roundTrip = performance.now() - started;
  statusLine.textContent = `${roundTrip.toFixed(0)} ms round trip (${answer.ms} ms in the model)`;
}

function showError(message) {
  showNothing();
  statusLine.className = "error";
  statusLine.textContent = message;
}

function showNothing() {
  document.body.removeAttribute("data-prediction");
  document.getElementById("prediction").textContent = "–";
  document.getElementById("input").removeAttribute("src");
  document.getElementById("saliency").removeAttribute("src");
  document.getElementById("bars").replaceChildren();
  document.getElementById("layers").replaceChildren();
  statusLine.textContent = "";
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

function show(answer) {
  document.getElementById("prediction").textContent = answer.class;
  // Beside the bars, never instead: the server says when the picture is far from the digits.
  document.getElementById("not-a-digit").textContent = answer.not_a_digit || "";
  document.getElementById("input").src = answer.input.png;
  document.getElementById("saliency").src = answer.saliency.png;
  document.getElementById("bars").replaceChildren(
    ...answer.classes.map((name, k) => {
      const p = answer.probabilities[k];
      const row = element("div", k === answer.index ? "bar-row best" : "bar-row");
      row.dataset.class = name;
      const track = element("div", "track");
      const fill = element("div", "fill");
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      track.append(fill);
      row.append(element("span", "name", name), track, element("span", "pct", `${(100 * p).toFixed(1)}%`));
      return row;
    }),
  );
  document.getElementById("layers").replaceChildren(
    ...answer.layers.map((layer) => {
      const card = element("figure", "layer");
      card.dataset.layer = layer.name;
      const caption = element("figcaption");
      const [low, high] = layer.range;
      caption.append(
        element("b", "", layer.name),
        ` ${layer.type} ${layer.shape.join("×")}  [${low.toPrecision(3)}, ${high.toPrecision(3)}]`,
      );
      const picture = element("img");
      picture.alt = `output of ${layer.name}`;
      picture.src = layer.png;
      card.append(caption, picture);
      return card;
    }),
  );
  // Set last: the page is complete once this attribute is there (the browser test waits on it).
  document.body.dataset.prediction = answer.class;
}

// The tabs, and the Model tab's content, fetched once.
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) {
      other.classList.toggle("selected", other === tab);
      document.getElementById(other.dataset.tab).hidden = other !== tab;
    }
  });
}

async function loadModel() {
  const model = await (await fetch("/api/model")).json();
  document.getElementById("model-name").textContent = model.model;
  document.getElementById("summary").textContent = model.summary;
  const figures = document.getElementById("figures");
  if (model.figures.length === 0) {
    figures.append(element("p", "hint", "No training log or figures beside this model file."));
  }
  for (const figure of model.figures) {
    const box = element("figure");
    const picture = element("img");
    picture.alt = figure.title;
    picture.src = figure.url;
    box.append(picture, element("figcaption", "", figure.title));
    figures.append(box);
  }
}

clearCanvas();
loadModel().catch((error) => showError(`cannot load the model's description (${error.message})`));
