//! Browser actions (`browser.open`, `browser.fill`, ...): real Chromium driven
//! over WebDriver (fantoccini + chromedriver, started and stopped by clerk).
//!
//! - [`session`]: chromedriver, the per-run session, cleanup without orphans;
//! - [`locator`]: `css` / `xpath` / `label` / `text` / `name` / `id` + `nth`, `within`;
//! - [`resolve`]: auto-wait, one WebDriver round trip per poll;
//! - [`actions`] (element actions) and [`page`] (page-level actions);
//! - [`navigate`]: waits for the page a click loads, HTTP errors;
//! - [`form`]: `fill_form` (a whole form in one round trip);
//! - [`outcome`]: `wait_for { any }` and click's `wait_for`, `read_texts`, `settings`;
//! - [`evidence`]: screenshot + page HTML when a step fails;
//! - [`error`] and [`step`]: the step's error, wait limit, masking, wrap-up.

pub mod actions;
pub mod error;
pub mod evidence;
pub mod form;
pub mod locator;
pub mod navigate;
pub mod outcome;
pub mod page;
pub mod resolve;
pub mod session;
pub mod step;

pub use error::{BrowserError, wd, wd_message};
pub use step::{finish, shown_value, wait_limit};
