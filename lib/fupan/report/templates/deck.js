(function () {
  "use strict";
  var slides = Array.prototype.slice.call(document.querySelectorAll("section.slide"));
  var counter = document.getElementById("counter");
  var modeBtn = document.getElementById("mode");
  var body = document.body;
  var idx = 0;
  function fromHash() {
    var m = /^#(\d+)$/.exec(window.location.hash);
    if (m) { idx = Math.min(Math.max(parseInt(m[1], 10) - 1, 0), slides.length - 1); }
  }
  function fit() {
    if (!body.classList.contains("deck-mode")) { return; }
    var s = Math.min(window.innerWidth / 1280, window.innerHeight / 720);
    slides.forEach(function (el) {
      el.style.transform = "translate(-50%, -50%) scale(" + s + ")";
    });
  }
  function show(i) {
    idx = Math.min(Math.max(i, 0), slides.length - 1);
    slides.forEach(function (el, j) { el.classList.toggle("active", j === idx); });
    counter.textContent = (idx + 1) + " / " + slides.length;
    if (history.replaceState) { history.replaceState(null, "", "#" + (idx + 1)); }
  }
  function toggle() {
    var deck = body.classList.contains("deck-mode");
    body.classList.toggle("deck-mode", !deck);
    body.classList.toggle("scroll-mode", deck);
    modeBtn.textContent = deck ? modeBtn.getAttribute("data-deck") : modeBtn.getAttribute("data-scroll");
    slides.forEach(function (el) { el.style.transform = ""; });
    fit();
    if (!deck) { show(idx); } else { slides[idx].scrollIntoView(); }
  }
  modeBtn.setAttribute("data-scroll", modeBtn.textContent);
  modeBtn.setAttribute("data-deck", "▣");
  document.getElementById("prev").addEventListener("click", function () { show(idx - 1); });
  document.getElementById("next").addEventListener("click", function () { show(idx + 1); });
  modeBtn.addEventListener("click", toggle);
  document.addEventListener("keydown", function (e) {
    if (!body.classList.contains("deck-mode")) { if (e.key === "s" || e.key === "S") { toggle(); } return; }
    switch (e.key) {
      case "ArrowRight": case "PageDown": case " ": case "ArrowDown": show(idx + 1); e.preventDefault(); break;
      case "ArrowLeft": case "PageUp": case "ArrowUp": show(idx - 1); e.preventDefault(); break;
      case "Home": show(0); e.preventDefault(); break;
      case "End": show(slides.length - 1); e.preventDefault(); break;
      case "s": case "S": toggle(); break;
    }
  });
  window.addEventListener("resize", fit);
  window.fupanDeck = { show: show, count: slides.length, current: function () { return idx; }, toggle: toggle };
  fromHash();
  fit();
  show(idx);
})();
