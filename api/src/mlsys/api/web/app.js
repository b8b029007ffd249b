// The AIAnimals web client: only the public /v0 API, with the `token` header as the
// Android app sends it. No build step and nothing fetched from elsewhere.
"use strict";

// The token is kept for this tab only (sessionStorage): gone when the tab closes.
const state = {
  token: sessionStorage.getItem("aianimals.token"),
  handle: sessionStorage.getItem("aianimals.handle"),
  metadata: null,
  search: null, // the last search: its id, request and results (access logs refer to it)
  post: null,
  similar: null, // whether the API has the similar-posts endpoint
};

const $ = (id) => document.getElementById(id);

async function api(path, { method = "GET", json, form } = {}) {
  const headers = {};
  if (state.token) headers.token = state.token;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  const response = await fetch(path, { method, headers, body });
  if (response.status === 401 && path !== "/v0/user/login") {
    logOut();
    throw new Error("Your session has ended: log in again.");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : `${response.status} ${response.statusText}`);
  }
  return data;
}

function show(view) {
  for (const id of ["login-view", "verify-view", "search-view", "post-view", "new-post-view"]) {
    $(id).hidden = id !== view;
  }
  $("logout").hidden = !state.token;
  $("who").textContent = state.token ? `@${state.handle}` : "";
}

function logOut() {
  state.token = null;
  sessionStorage.removeItem("aianimals.token");
  sessionStorage.removeItem("aianimals.handle");
  show("login-view");
}

async function logIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  $("login-error").textContent = "";
  try {
    const answer = await api("/v0/user/login", {
      method: "POST",
      json: { handle_name: form.get("handle_name"), password: form.get("password") },
    });
    state.token = answer.token;
    state.handle = form.get("handle_name");
    sessionStorage.setItem("aianimals.token", state.token);
    sessionStorage.setItem("aianimals.handle", state.handle);
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

// Signing up mails a link to the address; the answer is the same whatever the address.
async function signUp(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  $("signup-result").textContent = "";
  try {
    const pending = await api("/v0/user", {
      method: "POST",
      json: {
        handle_name: form.get("handle_name"),
        email_address: form.get("email_address"),
        password: form.get("password"),
        age: Number(form.get("age")),
        gender: Number(form.get("gender")),
      },
    });
    $("signup-result").textContent =
      `Check your mail: a link to confirm ${pending.email_address} is on its way.`;
  } catch (error) {
    $("signup-result").textContent = error.message;
  }
}

// The mailed link opens this page with `#verify=<token>`: a click (not the page's opening,
// which mail scanners do too) confirms the address.
async function verify(token) {
  $("verify").disabled = true;
  try {
    const user = await api("/v0/user/verify", { method: "POST", json: { token } });
    history.replaceState(null, "", location.pathname); // the token is used: off the address
    $("verify-result").textContent = `Your address is confirmed: log in as @${user.handle_name}.`;
    $("login-form").elements.handle_name.value = user.handle_name;
    $("login-view").hidden = false;
  } catch (error) {
    $("verify-result").textContent = error.message;
    $("verify").disabled = false;
  }
}

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  return element;
}

function fillBreeds(select, categoryId, valueOf) {
  const keep = select.querySelector('option[value=""]');
  select.replaceChildren(...(keep ? [keep] : []));
  for (const breed of state.metadata.animal_subcategory) {
    if (categoryId === "" || String(breed.animal_category_id) === String(categoryId)) {
      select.append(option(valueOf(breed), `${breed.name_ja} (${breed.name_en})`));
    }
  }
}

async function loadMetadata() {
  state.metadata = await api("/v0/metadata");
  const searchCategory = $("search-form").elements.category;
  const postCategory = $("new-post-form").elements.animal_category_id;
  for (const category of state.metadata.animal_category) {
    const label = `${category.name_ja} (${category.name_en})`;
    searchCategory.append(option(category.name_en, label));
    postCategory.append(option(category.id, label));
  }
  const byName = (name) => state.metadata.animal_category.find((c) => c.name_en === name);
  searchCategory.onchange = () => {
    const category = byName(searchCategory.value);
    fillBreeds($("search-form").elements.subcategory, category ? category.id : "", (b) => b.name_en);
  };
  postCategory.onchange = () =>
    fillBreeds($("new-post-form").elements.animal_subcategory_id, postCategory.value, (b) => b.id);
  searchCategory.onchange();
  postCategory.onchange();
}

function card(post, onOpen) {
  const item = document.createElement("li");
  item.dataset.id = post.id;
  const photo = document.createElement("img");
  photo.src = post.photo_url;
  photo.alt = post.name;
  const name = document.createElement("p");
  name.className = "name";
  name.textContent = post.name;
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.textContent = `${post.animal_subcategory_name_ja} · ♥ ${post.like}`;
  item.append(photo, name, meta);
  item.onclick = () => onOpen(post);
  return item;
}

function accessLog(post, action, position) {
  if (!state.search) return;
  const { request } = state.search;
  api("/v0/access_log", {
    method: "POST",
    json: {
      search_id: state.search.id,
      animal_id: post.id,
      action,
      position,
      phrases: request.phrases,
      sort_by: request.sort_by,
    },
  }).catch(() => {}); // a lost log line must not disturb the user
}

async function search(event) {
  if (event) event.preventDefault();
  const form = $("search-form").elements;
  const request = {
    phrases: form.phrases.value.split(/\s+/).filter(Boolean),
    sort_by: form.sort_by.value,
  };
  if (form.category.value) request.animal_category_name_en = form.category.value;
  if (form.subcategory.value) request.animal_subcategory_name_en = form.subcategory.value;
  $("search-summary").textContent = "Searching…";
  try {
    const answer = await api("/v0/animal/search?limit=24", { method: "POST", json: request });
    state.search = { id: answer.search_id, request, results: answer.results };
    $("search-summary").textContent = `${answer.hits} posts`;
    $("results").replaceChildren(
      ...answer.results.map((post, position) =>
        card(post, (chosen) => {
          accessLog(chosen, "select", position);
          openPost(chosen.id);
        }),
      ),
    );
    answer.results.forEach((post, position) => accessLog(post, "impression", position));
  } catch (error) {
    $("search-summary").textContent = error.message;
  }
}

async function hasSimilarEndpoint() {
  if (state.similar === null) {
    try {
      const spec = await api("/v0/openapi.json");
      state.similar = "/v0/animal/search/similar" in spec.paths;
    } catch {
      state.similar = false;
    }
  }
  return state.similar;
}

async function openPost(animalId) {
  const [post] = await api(`/v0/animal?id=${encodeURIComponent(animalId)}`);
  if (!post) {
    $("search-summary").textContent = "That post is no longer shown.";
    return;
  }
  state.post = post;
  $("post-photo").src = post.photo_url;
  $("post-photo").alt = post.name;
  $("post-name").textContent = post.name;
  $("post-description").textContent = post.description;
  $("post-meta").textContent =
    `${post.animal_category_name_ja} · ${post.animal_subcategory_name_ja} · @${post.user_handle_name} · ` +
    new Date(post.created_at).toLocaleDateString("ja-JP");
  $("post-likes").textContent = post.like;
  $("like").disabled = false;
  $("like").textContent = "Like";
  show("post-view");
  $("similar-section").hidden = true;
  if (await hasSimilarEndpoint()) {
    let posts = [];
    try {
      const similar = await api("/v0/animal/search/similar", {
        method: "POST",
        json: { animal_id: post.id, limit: 8 },
      });
      posts = similar.results;
    } catch (error) {
      // No index served yet (503), or the post not in it yet (404): the post without them.
      console.info(`no similar posts: ${error.message}`);
    }
    $("similar").replaceChildren(...posts.map((p) => card(p, (chosen) => openPost(chosen.id))));
    $("similar-section").hidden = posts.length === 0;
  }
}

async function like() {
  const post = state.post;
  $("like").disabled = true;
  try {
    const response = await fetch("/v0/like", {
      method: "POST",
      headers: { token: state.token, "Content-Type": "application/json" },
      body: JSON.stringify({ animal_id: post.id }),
    });
    if (response.status === 201) {
      post.like += 1;
      accessLog(post, "like", null);
    } else if (response.status !== 200) {
      throw new Error(`${response.status}`);
    }
    $("post-likes").textContent = post.like;
    $("like").textContent = "Liked";
  } catch (error) {
    $("like").disabled = false;
    $("like").textContent = `Like (failed: ${error.message})`;
  }
}

async function newPost(event) {
  event.preventDefault();
  $("new-post-error").textContent = "";
  $("new-post-done").textContent = "";
  try {
    const posted = await api("/v0/animal", { method: "POST", form: new FormData(event.target) });
    event.target.reset();
    $("new-post-form").elements.animal_category_id.onchange();
    $("new-post-done").textContent =
      `Posted “${posted.name}”: it shows in search once indexed and checked by moderation.`;
  } catch (error) {
    $("new-post-error").textContent = error.message;
  }
}

async function start() {
  const token = new URLSearchParams(location.hash.slice(1)).get("verify");
  if (token && !state.token) {
    show("verify-view");
    $("verify").onclick = () => verify(token);
    return;
  }
  if (!state.token) {
    show("login-view");
    return;
  }
  if (!state.metadata) await loadMetadata();
  show("search-view");
  await search();
}

window.addEventListener("DOMContentLoaded", () => {
  $("login-form").onsubmit = logIn;
  $("signup-form").onsubmit = signUp;
  $("logout").onclick = () => {
    api("/v0/user/logout", { method: "POST" }).catch(() => {});
    logOut();
  };
  $("search-form").onsubmit = search;
  $("back").onclick = () => show("search-view");
  for (const button of document.querySelectorAll(".back-to-search")) {
    button.onclick = () => show("search-view");
  }
  $("new-post-button").onclick = () => show("new-post-view");
  $("new-post-form").onsubmit = newPost;
  $("like").onclick = like;
  start().catch((error) => {
    $("login-error").textContent = error.message;
    show("login-view");
  });
});
