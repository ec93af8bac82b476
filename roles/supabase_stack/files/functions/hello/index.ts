// A sample function, reachable at /functions/v1/hello through the API gateway.
Deno.serve(() => new Response(JSON.stringify({ hello: "world" }), { headers: { "Content-Type": "application/json" } }));
