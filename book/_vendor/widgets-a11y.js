// Loaded on widget pages with the widget manager (see nb_ipywidgets_js in _config.yml); fetch.sh
// copies it next to the vendored html-manager. It gives the book's static widgets what
// ipywidgets' own views leave out, for screen-reader and keyboard users:
//
// 1. Slider handles (noUiSlider, role="slider") get an accessible name: the widget's visible
//    description and its current value ("learning rate 0.03"), and aria-valuetext = the value
//    shown (noUiSlider reads out the option's index, "5"). Both follow every move.
// 2. A polite live region per widget announces the caption of the frame a move brings up.
// 3. Accordion headers (the curve doctor's hidden verdicts) become buttons: Tab reaches them,
//    Enter or Space opens them, aria-expanded says whether they are open.
// 4. The "null" tooltip ipywidgets puts on every label (title="null") is dropped.
//
// The alt text of every frame is not made here: it is in the widget's own HTML (g2c's Picture),
// so it is the same live in Jupyter. The focus ring and header contrast are in _static/a11y.css.
(function () {
  "use strict";

  function text(element) {
    return element ? element.textContent.replace(/\s+/g, " ").trim() : "";
  }

  // Set an attribute only when it changes: our own writes must not wake the observer forever.
  function set(element, name, value) {
    if (element.getAttribute(name) !== value) element.setAttribute(name, value);
  }

  function nameSlider(slider) {
    var handle = slider.querySelector(".noUi-handle");
    if (!handle) return;
    var what = text(slider.querySelector(".widget-label"));
    var value = text(slider.querySelector(".widget-readout"));
    set(handle, "aria-label", value ? what + " " + value : what);
    if (value) set(handle, "aria-valuetext", value);
    var readout = slider.querySelector(".widget-readout");
    if (readout) set(readout, "aria-label", what + " value");
  }

  function dropNullTitles(area) {
    area.querySelectorAll('[title="null"]').forEach(function (element) {
      element.removeAttribute("title");
    });
  }

  function collapseHeaders(area) {
    area.querySelectorAll(".jupyter-widget-Collapse-header").forEach(function (header) {
      set(header, "role", "button");
      set(header, "tabindex", "0");
      var open = header.parentElement.classList.contains("jupyter-widget-Collapse-open");
      set(header, "aria-expanded", open ? "true" : "false");
      if (!header.dataset.g2cKeys) {
        header.dataset.g2cKeys = "1";
        header.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            header.click();
          }
        });
      }
    });
  }

  // The frame shown is the one <img class="g2c-frame"> in the area (a Stack renders only the
  // selected page); its page's visible text is the caption. The region stays empty at load, so
  // only a change is announced.
  function announce(area) {
    var frame = area.querySelector("img.g2c-frame");
    if (!frame) return;
    var region = area.querySelector(":scope > .g2c-live");
    if (!region) {
      region = document.createElement("div");
      region.className = "g2c-live g2c-sr-only";
      region.setAttribute("role", "status");
      region.setAttribute("aria-live", "polite");
      region.setAttribute("aria-atomic", "true");
      region.dataset.frame = frame.alt;
      area.appendChild(region);
      return;
    }
    if (region.dataset.frame === frame.alt) return;
    region.dataset.frame = frame.alt;
    var page = frame.closest(".widget-html").parentElement;
    region.textContent = page.innerText.replace(/\s+/g, " ").trim() || frame.alt;
  }

  function refresh() {
    scheduled = false;
    document.querySelectorAll(".widget-subarea").forEach(function (area) {
      area.querySelectorAll(".widget-slider").forEach(nameSlider);
      dropNullTitles(area);
      collapseHeaders(area);
      announce(area);
    });
  }

  var scheduled = false;
  function schedule() {
    if (!scheduled) {
      scheduled = true;
      window.requestAnimationFrame(refresh);
    }
  }

  function start() {
    new MutationObserver(schedule).observe(document.body, {
      subtree: true, childList: true, characterData: true, attributes: true,
      attributeFilter: ["aria-valuenow", "class", "title"],
    });
    schedule();
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
