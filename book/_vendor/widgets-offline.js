// Loaded on widget pages just before require.js and embed-amd.js (see nb_ipywidgets_js in
// _config.yml); fetch.sh copies it next to the vendored widget manager.

// 1. Fonts. Each AMD module in embed-amd.js ("@jupyter-widgets/controls", ".../base",
// ".../html-manager", ".../html-manager/dist/libembed-amd") finds its icon fonts (Font Awesome,
// for the Accordion's chevron and button icons) in the folder of the URL require.js gives that
// module: by default under the page's own folder. A global `require` object defined before
// require.js loads is its configuration: map every one of those ids into this vendored folder,
// the copy of html-manager's dist/ where the fonts are.
var require = {
  baseUrl: new URL("./", document.currentScript.src).href,
  paths: { "@jupyter-widgets/html-manager/dist": ".", "@jupyter-widgets": "." },
};

// 2. Math in widget labels. html-manager 1.0.6 typesets labels with MathJax 2's
// `MathJax.Hub.Queue` whenever `window.MathJax` exists; the book runs MathJax 3, which has no
// Hub. Provide one that forwards to MathJax 3 once it is ready (a no-op until then: MathJax's
// first pass typesets everything already on the page).
(function () {
  function queue(job) {
    var element = job && job[2];
    if (element && window.MathJax && window.MathJax.typesetPromise) {
      window.MathJax.typesetPromise([element]).catch(function () {});
    }
  }
  var mathjax = (window.MathJax = window.MathJax || {});
  if (mathjax.version) {
    mathjax.Hub = { Queue: queue };
    return;
  }
  // MathJax 3 is not loaded yet, so this object is its configuration.
  mathjax.Hub = { Queue: function () {} };
  mathjax.startup = mathjax.startup || {};
  mathjax.startup.ready = function () {
    window.MathJax.startup.defaultReady();
    window.MathJax.Hub = { Queue: queue };
  };
})();
