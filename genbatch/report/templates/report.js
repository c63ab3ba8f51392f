(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gb-data").textContent);
  var PAGE = data.page_size, CHUNK = data.chunk_size, KEEP = data.max_kept;

  function cols(names) { var m = {}; names.forEach(function (n, i) { m[n] = i; }); return m; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function str(v) { return v === null || v === undefined ? "" : String(v); }
  function cell(tr, text, cls) { tr.appendChild(el("td", cls || "", str(text))); }
  var problem = document.getElementById("load-problem");
  function showProblem(error) { problem.textContent = String(error && error.message || error); problem.hidden = false; }

  // Paged data: each list's first chunk is in the page (data[section]); chunk c > 0 is the
  // script PAGES_DIR/section-(c+1).js, which calls genbatchChunk(report, section, number, rows).
  var arrived = {}, loading = {}, loaded = {}, recent = [];
  window.genbatchChunk = function (report, section, number, rows) {
    arrived[section + "/" + number] = report === data.report ? rows : null;
  };
  function nothing() {}
  function pad(n) { var s = String(n); while (s.length < 6) s = "0" + s; return s; }
  // Calls then(rows) with chunk c of a section: at once when it is at hand, else once loaded.
  function withChunk(section, c, then, fail) {
    var key = section + "/" + (c + 1);
    if (c === 0) return then(data[section]);
    if (loaded[key]) return then(loaded[key]);
    if (loading[key]) { loading[key].push([then, fail]); return; }
    var waiters = loading[key] = [[then, fail]];
    var file = data.pages_dir + "/" + section + "-" + pad(c + 1) + ".js";
    var script = document.createElement("script");
    function settle(rows, error) {
      delete loading[key]; delete arrived[key]; script.remove();
      if (rows) {
        loaded[key] = rows; recent.push(key);
        if (recent.length > 6) delete loaded[recent.shift()];
      }
      waiters.forEach(function (w) { if (rows) w[0](rows); else w[1](error); });
    }
    script.onload = function () {
      var rows = arrived[key];
      settle(rows, new Error(rows === null ? file + " belongs to another report (rewritten since this page was " +
          "opened): reload the page" : file + " holds no data: rerun genbatch report"));
    };
    script.onerror = function () { settle(null, new Error("could not load " + file + ": rerun genbatch report")); };
    script.src = file + "?" + data.report;
    document.head.appendChild(script);
  }

  // A list shown a page at a time, filtered by words and optionally sorted. Without a filter or
  // a sort a page is read from its chunk; with one, every chunk is read in turn and the matching
  // rows are counted, the first KEEP kept (with a sort: the KEEP first in that order).
  var hays = new WeakMap();
  function Section(id, name, haystack, render) {
    var root = document.getElementById(id);
    var list = root.querySelector(".items");
    var infos = root.querySelectorAll(".pager .info");
    var prevs = root.querySelectorAll(".pager .prev");
    var nexts = root.querySelectorAll(".pager .next");
    var total = data.totals[name], chunks = data.chunks[name];
    var view = null, page = 0, terms = [], cmp = null, gen = 0, drawn = 0;
    var self = { total: total, matched: total, searching: false, changed: function () {} };
    var rendered = null;
    function show(rows, start, end, n, pages) {
      var same = rendered && n && rendered.length === rows.length &&
          rows.every(function (r, i) { return r === rendered[i]; });
      if (!same) {  // a search that goes on only updates the counts while its page stays the same
        var frag = document.createDocumentFragment();
        rows.forEach(function (r) { frag.appendChild(render(r)); });
        list.replaceChildren(frag);
      }
      rendered = rows;
      if (!n) list.appendChild(el(list.tagName === "TBODY" ? "tr" : "div", "empty",
          view && !view.done ? "Searching…" : total ? "Nothing matches the filter." : "None."));
      var matched = view ? view.matched : total;
      var text = n ? "Showing " + (start + 1).toLocaleString() + "–" + end.toLocaleString() +
          " of " + matched.toLocaleString() +
          (matched !== total || view && !view.done ? " (filtered from " + total.toLocaleString() + ")" : "") +
          (pages > 1 ? " · page " + (page + 1) + " of " + pages : "") +
          (view && matched > n ? " · the " + (cmp ? "top " : "first ") + n.toLocaleString() + " are listed" : "") : "";
      if (view && !view.done) text += (text ? " · " : "") + "searching… " + Math.floor(100 * view.scanned / chunks) + "%";
      infos.forEach(function (node, i) { node.textContent = text; node.parentNode.hidden = !text || (i > 0 && pages <= 1); });
      prevs.forEach(function (b) { b.disabled = page === 0; b.hidden = pages <= 1; });
      nexts.forEach(function (b) { b.disabled = page >= pages - 1; b.hidden = pages <= 1; });
    }
    function draw() {
      var n = view ? view.rows.length : total;
      var pages = Math.max(1, Math.ceil(n / PAGE));
      if (page > pages - 1) page = pages - 1;
      var start = page * PAGE, end = Math.min(n, start + PAGE), token = ++drawn;
      if (view) return show(view.rows.slice(start, end), start, end, n, pages);
      var c = Math.floor(start / CHUNK);  // CHUNK is a multiple of PAGE: a page is in one chunk
      withChunk(name, c, function (rows) {
        if (token === drawn) show(rows.slice(start - c * CHUNK, end - c * CHUNK), start, end, n, pages);
      }, showProblem);
    }
    function go(delta) { page += delta; draw(); root.scrollIntoView(); }
    prevs.forEach(function (b) { b.addEventListener("click", function () { go(-1); }); });
    nexts.forEach(function (b) { b.addEventListener("click", function () { go(1); }); });
    function matches(rows, i) {
      var hay = hays.get(rows);
      if (!hay) hays.set(rows, hay = new Array(rows.length));
      var text = hay[i] || (hay[i] = haystack(rows[i]).toLowerCase());
      for (var t = 0; t < terms.length; t++) if (text.indexOf(terms[t]) < 0) return false;
      return true;
    }
    function apply() {
      var my = ++gen, c = 0, last = 0;
      page = 0;
      if (!terms.length && !cmp) { view = null; self.matched = total; self.searching = false; draw(); self.changed(); return; }
      var v = view = { rows: [], matched: 0, scanned: 0, done: false };
      function trim() { v.rows.sort(cmp); if (v.rows.length > KEEP) v.rows.length = KEEP; }
      function finish() { if (cmp) trim(); v.done = true; self.searching = false; self.matched = v.matched; draw(); self.changed(); }
      function take(rows) {
        if (my !== gen) return;
        for (var i = 0; i < rows.length; i++) {
          if (terms.length && !matches(rows, i)) continue;
          v.matched++;
          if (cmp || v.rows.length < KEEP) v.rows.push(rows[i]);
        }
        if (cmp && v.rows.length > 2 * KEEP) trim();
        v.scanned = ++c;
        if (c >= chunks) return finish();
        self.matched = v.matched;
        var now = Date.now();
        if (now - last > 300) { last = now; draw(); self.changed(); }
        setTimeout(next, 0);  // let the page answer input between chunks
      }
      function next() {
        if (my !== gen) return;
        for (var ahead = c + 1; ahead < Math.min(chunks, c + 3); ahead++) withChunk(name, ahead, nothing, nothing);
        withChunk(name, c, take, function (e) { showProblem(e); finish(); });
      }
      self.searching = chunks > 1;
      next();
    }
    draw();
    self.filter = function (words) { terms = words; apply(); };
    self.sort = function (compare) { cmp = compare; apply(); };
    return self;
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
    (r[C.settings] || []).forEach(function (v) { p.push(v[0] + " " + str(v[1])); });
    if (r[C.seconds] !== null) p.push(Number(r[C.seconds]).toFixed(2) + " s");
    return p.join(" · ");
  }
  // The manifest's own columns (DrawBench's Category...): "name: value" on the card, found by the
  // filter as "name:value", and a menu per column with few values.
  function extras(r) { return r[C.extra] || []; }
  function extraTerm(name, value) { return "\n" + (name + ":" + str(value)).toLowerCase() + "\n"; }
  // A row's input images ([label, path, thumbnail or null, sha256]: the image, mask and control
  // image it started from), shown beside its output; the path stands in for a thumbnail not made.
  function inputs(r) { return r[C.inputs] || []; }
  function inputFigure(i, r) {
    var f = el("figure", "input");
    f.title = i[0] + ": " + str(i[1]) + "\nsha256 " + str(i[3]);
    if (i[2]) {
      var img = el("img"); img.loading = "lazy"; img.decoding = "async"; img.alt = i[0] + " " + str(i[1]).slice(0, 200);
      if (r[C.width] > 0 && r[C.width] < SMALL && r[C.height] < SMALL) img.className = "pixelated";
      img.src = i[2];
      f.appendChild(img);
    } else {
      f.appendChild(el("div", "gone", i[1]));
    }
    f.appendChild(el("figcaption", "", i[0]));
    return f;
  }
  var images = Section("images", "cards", function (r) {
    return "\n" + [r[C.prompt], r[C.negative_prompt], "seed:" + r[C.seed], "id:" + str(r[C.id]), "#" + r[C.index],
      params(r), "steps:" + r[C.steps], "cfg:" + r[C.guidance_scale], r[C.width] + "x" + r[C.height],
      r[C.model], r[C.src], r[C.lora] ? "lora:" + r[C.lora] : ""]
      .concat(extras(r).map(function (e) { return e[0] + ":" + str(e[1]); }))
      .concat(inputs(r).map(function (i) { return i[0] + ":" + str(i[1]); })).map(str).join("\n") + "\n";
  }, function (r) {
    var card = el("figure", "card");
    var a = el("a", "pic"); a.href = r[C.src]; a.target = "_blank"; a.rel = "noopener";
    var img = el("img"); img.loading = "lazy"; img.decoding = "async"; img.alt = str(r[C.prompt]).slice(0, 200);
    if (r[C.width] > 0 && r[C.height] > 0) img.style.aspectRatio = Number(r[C.width]) + " / " + Number(r[C.height]);
    // Small images (64 px) scaled up with nearest neighbour: crisp pixels, not blur.
    if (r[C.width] > 0 && r[C.width] < SMALL && r[C.height] < SMALL) img.className = "pixelated";
    img.src = r[C.thumb];
    a.appendChild(img);
    if (inputs(r).length) {  // inputs, then the output, side by side; the card spans two columns
      card.className += " with-inputs";
      var io = el("div", "io");
      inputs(r).forEach(function (i) { io.appendChild(inputFigure(i, r)); });
      var out = el("figure", "input output"); out.appendChild(a); out.appendChild(el("figcaption", "", "output"));
      io.appendChild(out);
      card.appendChild(io);
    } else {
      card.appendChild(a);
    }
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
  var failed = Section("failed", "failed", function (r) { return r.map(str).join("\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[F.index]); cell(tr, r[F.line]); cell(tr, r[F.id]); cell(tr, r[F.prompt], "text");
    cell(tr, r[F.seed]); cell(tr, r[F.model]); cell(tr, r[F.error], "reason"); cell(tr, r[F.finished_at]);
    return tr;
  });
  var S = cols(data.skipped_cols);
  var skipped = Section("skipped", "skipped", function (r) { return r.map(str).join("\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[S.line]); cell(tr, r[S.manifest], "text"); cell(tr, r[S.id]); cell(tr, r[S.prompt], "text");
    cell(tr, r[S.error], "reason");
    return tr;
  });
  var M = cols(data.missing_cols);
  var missing = Section("missing", "missing", function (r) { return r.map(str).join("\n"); }, function (r) {
    var tr = el("tr");
    cell(tr, r[M.index]); cell(tr, r[M.file], "text"); cell(tr, r[M.prompt], "text"); cell(tr, r[M.seed]);
    return tr;
  });

  var sections = [images, failed, skipped, missing];
  var input = document.getElementById("filter"), info = document.getElementById("filter-info");
  var timer = null, active = false;
  var facets = document.getElementById("facets"), chosen = {};
  Object.keys(data.facets).forEach(function (name) {  // the values the report found, up to 50 a column
    var label = el("label", "muted", name + " ");
    var select = el("select"); select.setAttribute("data-column", name);
    select.appendChild(el("option", "", "all")).value = "";
    data.facets[name].forEach(function (v) { select.appendChild(el("option", "", v)).value = v; });
    select.addEventListener("change", function () {
      if (select.value) chosen[name] = extraTerm(name, select.value); else delete chosen[name];
      runFilter();
    });
    label.appendChild(select); facets.appendChild(label);
  });
  function showCounts() {
    var searching = sections.some(function (s) { return s.searching; });
    info.textContent = active ? images.matched.toLocaleString() + " images, " + failed.matched.toLocaleString() +
        " failed, " + skipped.matched.toLocaleString() + " skipped" +
        (data.totals.missing ? ", " + missing.matched.toLocaleString() + " missing" : "") + " match" +
        (searching ? " so far (searching…)" : "") : "";
  }
  sections.forEach(function (s) { s.changed = showCounts; });
  function runFilter() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var picked = Object.keys(chosen).map(function (name) { return chosen[name]; });  // images only
    active = words.length + picked.length > 0;
    sections.forEach(function (s, i) { s.filter(i ? words : words.concat(picked)); });
    showCounts();
  }
  var paged = Object.keys(data.chunks).some(function (name) { return data.chunks[name] > 1; });
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(runFilter, paged ? 250 : 0);
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
