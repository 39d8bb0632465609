// Send the form in the background, showing upload progress and the time spent analysing.
// Without JavaScript the form posts normally and the server answers with the full results page.
(function () {
  "use strict";
  var form = document.getElementById("predict-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
  var box = document.getElementById("progress");
  var bar = document.getElementById("progress-bar");
  var text = document.getElementById("progress-text");
  var button = document.getElementById("submit");
  var result = document.getElementById("result");
  var timer = null;

  function stop() {
    if (timer) { clearInterval(timer); timer = null; }
    box.hidden = true;
    button.disabled = false;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var old = document.getElementById("error");
    if (old) { old.remove(); }
    result.innerHTML = "";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/predict?fragment=1");
    box.hidden = false;
    button.disabled = true;
    bar.value = 0;
    text.textContent = "Uploading…";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round(100 * e.loaded / e.total);
        text.textContent = "Uploading… " + bar.value + "%";
      }
    };
    xhr.upload.onload = function () {
      var start = Date.now();
      bar.removeAttribute("value");   // indeterminate while the server works
      text.textContent = "Reading the scan, building the ROI, predicting, computing Grad-CAM…";
      timer = setInterval(function () {
        text.textContent = "Reading the scan, building the ROI, predicting, computing Grad-CAM… " +
          Math.round((Date.now() - start) / 1000) + " s";
      }, 500);
    };
    xhr.onload = function () {
      stop();
      var type = xhr.getResponseHeader("content-type") || "";
      if (type.indexOf("json") >= 0) {   // refusals before the page could answer (size limit, token)
        var msg = "The server refused the request (" + xhr.status + ").";
        try { msg = JSON.parse(xhr.responseText).error || msg; } catch (e) { /* keep the generic line */ }
        var p = document.createElement("p");
        p.className = "error"; p.id = "error"; p.setAttribute("role", "alert"); p.textContent = msg;
        result.innerHTML = ""; result.appendChild(p);
        return;
      }
      result.innerHTML = xhr.responseText;
      result.scrollIntoView({behavior: "smooth"});
    };
    xhr.onerror = function () {
      stop();
      result.innerHTML = '<p class="error" id="error" role="alert">The server could not be reached; try again.</p>';
    };
    xhr.send(new FormData(form));
  });
})();
