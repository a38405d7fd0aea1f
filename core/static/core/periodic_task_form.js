// django-celery-beat's periodic task form: under the crontab choice, the chosen schedule in words (the
// form's own read-only translation field is hidden, since this replaces it).
"use strict";
(function () {
  const data = document.getElementById("readable-crontabs");
  const field = document.querySelector(".field-crontab");
  if (!data || !field) {
    return;
  }
  const inWords = JSON.parse(data.textContent);
  const readOnlyTranslation = document.querySelector(".field-crontab_translation");
  if (readOnlyTranslation) {
    readOnlyTranslation.style.display = "none";
  }
  const help = field.querySelector(".help") || field.appendChild(document.createElement("div"));
  const translation = document.createElement("div");
  help.appendChild(translation);

  function showTranslation() {
    const choice = document.getElementById("id_crontab");
    const words = choice ? inWords[choice.value] : "";
    translation.textContent = words ? `Translation: ${words}` : "";
  }

  // Django's admin announces a choice made in its "add another" pop-up through jQuery, not a DOM event.
  if (window.django && window.django.jQuery) {
    window.django.jQuery(field).on("change", showTranslation);
  } else {
    field.addEventListener("change", showTranslation);
  }
  showTranslation();
})();
