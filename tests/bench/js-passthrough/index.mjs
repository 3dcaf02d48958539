// The benchmark's absolute floor: a JS worker forwarding every request, no auth.
export default {
  fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
  },
};
