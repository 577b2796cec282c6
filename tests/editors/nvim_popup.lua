-- Driven by test_neovim.py: `nvim --headless --clean -c 'luafile nvim_popup.lua'` (not -l: keys
-- typed in Insert mode need Neovim's main loop). Neovim 0.11's path of the shipped set-up: type a
-- trigger character, wait for the popup, accept its item with <C-y>, write the buffer as JSON.
local env = vim.env
local result = { steps = {} }
local client

local function finish(err)
  if err then result.error = tostring(err) end
  result.mode = vim.api.nvim_get_mode().mode
  if client then
    client:stop()
    vim.wait(15000, function() return client:is_stopped() end, 50)
  end
  local file = assert(io.open(env.CODELLAMA_RESULT, 'w'))
  file:write(vim.json.encode(result))
  file:close()
  vim.cmd('qa!')
end

local function main()
  vim.cmd.source(env.CODELLAMA_REPO .. '/editors/nvim/codellama.lua')
  vim.lsp.config('codellama', {
    cmd = { env.CODELLAMA_LSP_CMD },
    init_options = { model = env.CODELLAMA_MODEL, maxNewTokens = 24 },
  })
  result.nvim_version = tostring(vim.version())
  result.has_inline_completion = vim.lsp.inline_completion ~= nil
  vim.cmd.edit(env.CODELLAMA_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  if not vim.wait(30000, function()
    client = vim.lsp.get_clients({ bufnr = bufnr, name = 'codellama' })[1]
    return client ~= nil and client.initialized == true
  end, 50) then error('the client did not attach', 0) end
  if not vim.wait(120000, function()
    local reply = client:request_sync('codellama/stats', {}, 5000, bufnr)
    return reply and reply.result and reply.result.model ~= nil and reply.result.model ~= vim.NIL
  end, 200) then error('the model did not load', 0) end
  table.insert(result.steps, 'model loaded')
  result.completeopt = vim.bo[bufnr].completeopt

  local row = tonumber(env.CODELLAMA_LINE) -- 0-based; Insert mode at its end
  vim.api.nvim_win_set_cursor(0, { row + 1, 0 })
  local started, typed = vim.uv.now(), false
  local timer = assert(vim.uv.new_timer())
  timer:start(100, 100, vim.schedule_wrap(function()
    if not typed then
      typed = true
      vim.api.nvim_feedkeys(env.CODELLAMA_TYPE, 't', false)
      return
    end
    if vim.fn.pumvisible() == 1 then
      timer:stop()
      result.popup_ms = vim.uv.now() - started
      result.popup = vim.fn.complete_info({ 'items', 'selected' })
      result.line_with_popup = vim.api.nvim_get_current_line()
      table.insert(result.steps, 'popup')
      vim.api.nvim_feedkeys(vim.keycode('<C-y>'), 't', false)
      vim.defer_fn(function()
        result.after = table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), '\n')
        result.cursor = vim.api.nvim_win_get_cursor(0)
        table.insert(result.steps, 'accepted')
        vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 't', false)
        vim.defer_fn(function() finish() end, 100)
      end, 300)
    elseif vim.uv.now() - started > 60000 then
      timer:stop()
      result.line = vim.api.nvim_get_current_line()
      finish('no popup within 60 s')
    end
  end))
  vim.api.nvim_feedkeys('A', 'n', false)
end

local ok, err = xpcall(main, debug.traceback)
if not ok then finish(err) end
