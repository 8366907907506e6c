/** esbuild bundles an imported style sheet into console.css. */
declare module "*.css";
