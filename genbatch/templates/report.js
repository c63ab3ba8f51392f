(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gb-data").textContent);
  var PAGE = data.page_size;

  function cols(names) { var m = {}; names.forEach(function (n, i) { m[n] = i; }); return m; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function str(v) { return v === null || v === undefined ? "" : String(v); }
  function cell(tr, text, cls) { tr.appendChild(el("td", cls || "", str(text))); }

  // A list shown a page at a time, filtered by words and optionally sorted.
  function Section(id, rows, haystack, render) {
    var root = document.getElementById(id);
    var list = root.querySelector(".items");
    var infos = root.querySelectorAll(".pager .info");
    var prevs = root.querySelectorAll(".pager .prev");
    var nexts = root.querySelectorAll(".pager .next");
    var order = rows.map(function (_, i) { return i; });
    var shown = order, page = 0, hay = null, terms = [];
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      if (page > pages - 1) page = pages - 1;
      var start = page * PAGE, end = Math.min(shown.length, start + PAGE);
      var frag = document.createDocumentFragment();
      for (var i = start; i < end; i++) frag.appendChild(render(rows[shown[i]]));
      list.replaceChildren(frag);
      if (!shown.length) list.appendChild(el(list.tagName === "TBODY" ? "tr" : "div", "empty",
          rows.length ? "Nothing matches the filter." : "None."));
      var text = shown.length ? "Showing " + (start + 1).toLocaleString() + "–" + end.toLocaleString() +
          " of " + shown.length.toLocaleString() +
          (shown.length !== rows.length ? " (filtered from " + rows.length.toLocaleString() + ")" : "") +
          (pages > 1 ? " · page " + (page + 1) + " of " + pages : "") : "";
      infos.forEach(function (n, i) { n.textContent = text; n.parentNode.hidden = !text || (i > 0 && pages <= 1); });
      prevs.forEach(function (b) { b.disabled = page === 0; b.hidden = pages <= 1; });
      nexts.forEach(function (b) { b.disabled = page >= pages - 1; b.hidden = pages <= 1; });
    }
    function go(delta) { page += delta; draw(); root.scrollIntoView(); }
    prevs.forEach(function (b) { b.addEventListener("click", function () { go(-1); }); });
    nexts.forEach(function (b) { b.addEventListener("click", function () { go(1); }); });
    function apply() {
      if (!terms.length) { shown = order; }
      else {
        if (!hay) hay = rows.map(function (r) { return haystack(r).toLowerCase(); });
        shown = order.filter(function (i) {
          for (var t = 0; t < terms.length; t++) if (hay[i].indexOf(terms[t]) < 0) return false;
          return true;
        });
      }
      page = 0; draw();
    }
    draw();
    return {
      filter: function (words) { terms = words; apply(); return shown.length; },
      sort: function (cmp) {
        order = rows.map(function (_, i) { return i; });
        if (cmp) order.sort(function (a, b) { return cmp(rows[a], rows[b]) || a - b; });
        apply();
      },
      total: rows.length
    };
  }

  var C = cols(data.card_cols);
  var SMALL = 128;
  function params(r) {
    var p = [];
    if (r[C.seed] !== null) p.push("seed " + r[C.seed]);
    if (r[C.steps] !== null) p.push(r[C.steps] + " steps");
    if (r[C.guidance_scale] !== null) p.push("cfg " + r[C.guidance_scale]);
    if (r[C.width] !== null && r[C.height] !== null) p.push(r[C.width] + "×" + r[C.height]);
    if (r[C.scheduler]) p.push(r[C.scheduler]);
    if (r[C.lora]) p.push("lora " + r[C.lora]);
    if (r[C.seconds] !== null) p.push(Number(r[C.seconds]).toFixed(2) + " s");
    return p.join(" · ");
  }
  // The manifest's own columns (DrawBench's Category...): "name: value" on the card, found by the
  // filter as "name:value", and a menu per column with few values.
  function extras(r) { return r[C.extra] || []; }
  function extraTerm(name, value) { return "\n" + (name + ":" + str(value)).toLowerCase() + "\n"; }
  var images = Section("images", data.cards, function (r) {
    return "\n" + [r[C.prompt], r[C.negative_prompt], "seed:" + r[C.seed], "id:" + str(r[C.id]), "#" + r[C.index],
      params(r), "steps:" + r[C.steps], "cfg:" + r[C.guidance_scale], r[C.width] + "x" + r[C.height],
      r[C.model], r[C.src], r[C.lora] ? "lora:" + r[C.lora] : ""]
      .concat(extras(r).map(function (e) { return e[0] + ":" + str(e[1]); })).map(str).join("\n") + "\n";
  }, function (r) {
    var card = el("figure", "card");
    var a = el("a", "pic"); a.href = r[C.src]; a.target = "_blank"; a.rel = "noopener";
    var img = el("img"); img.loading = "lazy"; img.decoding = "async"; img.alt = str(r[C.prompt]).slice(0, 200);
    if (r[C.width] > 0 && r[C.height] > 0) img.style.aspectRatio = Number(r[C.width]) + " / " + Number(r[C.height]);
    // Small images (64 px) scaled up with nearest neighbour: crisp pixels, not blur.
    if (r[C.width] > 0 && r[C.width] < SMALL && r[C.height] < SMALL) img.className = "pixelated";
    img.src = r[C.thumb];
    a.appendChild(img); card.appendChild(a);
    var cap = el("figcaption");
    var prompt = el("p", "prompt", r[C.prompt]); prompt.title = str(r[C.prompt]); cap.appendChild(prompt);
    if (r[C.negative_prompt]) cap.appendChild(el("p", "neg", "− " + r[C.negative_prompt]));
    var head = "#" + r[C.index] + (r[C.k] ? "." + r[C.k] : "") +
        (r[C.id] !== null && r[C.id] !== "" ? " · id " + r[C.id] : "");
    cap.appendChild(el("p", "meta", head));
    cap.appendChild(el("p", "meta", params(r)));
    extras(r).forEach(function (e) {
      if (e[1] !== null && e[1] !== "") cap.appendChild(el("p", "meta extra", e[0] + ": " + str(e[1])));
    });
    card.appendChild(cap);
    return card;
  });

  var F = cols(data.failed_cols);
  var failed = Section("failed", data.failed, function (r) { return r.map(str).join("\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[F.index]); cell(tr, r[F.line]); cell(tr, r[F.id]); cell(tr, r[F.prompt], "text");
    cell(tr, r[F.seed]); cell(tr, r[F.model]); cell(tr, r[F.error], "reason"); cell(tr, r[F.finished_at]);
    return tr;
  });
  var S = cols(data.skipped_cols);
  var skipped = Section("skipped", data.skipped, function (r) { return r.map(str).join("\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[S.line]); cell(tr, r[S.manifest], "text"); cell(tr, r[S.id]); cell(tr, r[S.prompt], "text");
    cell(tr, r[S.error], "reason");
    return tr;
  });
  var M = cols(data.missing_cols);
  var missing = Section("missing", data.missing, function (r) { return r.map(str).join("\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[M.index]); cell(tr, r[M.file], "text"); cell(tr, r[M.prompt], "text"); cell(tr, r[M.seed]);
    return tr;
  });

  var sections = [images, failed, skipped, missing];
  var input = document.getElementById("filter"), info = document.getElementById("filter-info");
  var timer = null;
  var facets = document.getElementById("facets"), chosen = {};
  (function () {
    var values = {};
    data.cards.forEach(function (r) {
      extras(r).forEach(function (e) {
        if (e[1] === null || e[1] === "" || typeof e[1] === "object") return;
        (values[e[0]] = values[e[0]] || {})[str(e[1])] = true;
      });
    });
    Object.keys(values).forEach(function (name) {
      var options = Object.keys(values[name]).sort();
      if (options.length > 50) return;
      var label = el("label", "muted", name + " ");
      var select = el("select"); select.setAttribute("data-column", name);
      select.appendChild(el("option", "", "all")).value = "";
      options.forEach(function (v) { select.appendChild(el("option", "", v)).value = v; });
      select.addEventListener("change", function () {
        if (select.value) chosen[name] = extraTerm(name, select.value); else delete chosen[name];
        runFilter();
      });
      label.appendChild(select); facets.appendChild(label);
    });
  })();
  function runFilter() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var picked = Object.keys(chosen).map(function (name) { return chosen[name]; });  // images only
    var counts = sections.map(function (s, i) { return s.filter(i ? words : words.concat(picked)); });
    words = words.concat(picked);
    info.textContent = words.length ? counts[0].toLocaleString() + " images, " + counts[1].toLocaleString() +
        " failed, " + counts[2].toLocaleString() + " skipped match" : "";
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(runFilter, data.cards.length > 20000 ? 150 : 0);
  });
  document.getElementById("sort").addEventListener("change", function (e) {
    var v = e.target.value, s = C.seconds;
    images.sort(v === "slow" ? function (a, b) { return (b[s] || 0) - (a[s] || 0); } :
                v === "fast" ? function (a, b) { return (a[s] || 0) - (b[s] || 0); } : null);
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.activeElement !== input) { e.preventDefault(); input.focus(); }
  });
  document.body.setAttribute("data-ready", "1");
})();
