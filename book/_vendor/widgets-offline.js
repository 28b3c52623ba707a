// Loaded on widget pages just before require.js and embed-amd.js (see nb_ipywidgets_js in
// _config.yml); fetch.sh copies it next to the vendored widget manager.

// 1. Fonts. The widget manager finds its icon fonts relative to the URL require.js gives the
// AMD module "@jupyter-widgets/html-manager/dist/libembed-amd": by default under the page's own
// folder. A global `require` object defined before require.js loads is its configuration:
// resolve module ids against this vendored folder, where fetch.sh puts the fonts.
var require = { baseUrl: new URL("./", document.currentScript.src).href };

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
